/**
 * What may leave the configuration as text: URLs without their secrets, and every echoed value on
 * one line. A webhook's path is its secret (Slack, Teams, Discord) and a URL's userinfo or query
 * may hold a password or token; `fetch` and other libraries put whole URLs into their errors.
 * Pure: no I/O.
 */

/**
 * A URL inside free text: a scheme and `//`, optional userinfo, the host (an IPv6 literal in
 * brackets, or anything up to the next delimiter), and the path, query and fragment that follow.
 */
const URL_IN_TEXT =
  /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@"'<>]*@)?(\[[0-9a-f:.]*\](?::\d*)?|[^\s/?#"'<>()[\]{}|\\^`@]*)([/?#][^\s"'<>()]*)?/gi;

/**
 * `text` with every URL in it cut to its scheme and host: userinfo dropped, and a path, query
 * or fragment shown as "/…". Parseable or not, since the text of a bad URL is secret too.
 */
export function redactUrls(text: string): string {
  return text.replace(
    URL_IN_TEXT,
    (_all, scheme: string, _user: string | undefined, host: string, rest: string | undefined) =>
      `${scheme}${host}${rest ? "/…" : ""}`,
  );
}

/**
 * A configured URL for people: scheme, host, port and path; userinfo dropped and a query or
 * fragment shown as "?…" (a token often rides there). For heartbeats, whose path is no secret.
 */
export function publicUrl(url: URL): string {
  const hidden = url.search !== "" || url.hash !== "" ? "?…" : "";
  // fcgi+unix:// has no host: its path names the socket and the script
  return `${url.protocol}//${url.host}${url.pathname}${hidden}`;
}

/**
 * A URL as typed, parseable or not, for an error message: whatever stands before an `@` in its
 * first segments (`user:password@`) hidden, and cut at 200 characters.
 */
export function withoutUserinfo(value: string): string {
  const shown = value.replace(/(^|\/)[^/\s?#]*@/, "$1…@");
  return shown.length > 200 ? `${shown.slice(0, 200)}…` : shown;
}

/** A webhook for people: scheme and host only, since its path is the secret. */
export function webhookName(url: URL): string {
  return `${url.protocol}//${url.host}/…`;
}

/**
 * Control characters (Cc), format characters (Cf: bidi overrides and isolates, zero-width ones,
 * the byte order mark, tag characters), line and paragraph separators (Zl, Zp), and the Hangul
 * fillers that show as nothing, and lone surrogates (Cs): by Unicode category, so that none is
 * missed.
 */
const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\u115F\u1160\u3164\uFFA0]/gu;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * `text` with control characters written as escapes (`\n`, `\r`, `\t`, `\x1b`, `\u2028`), so
 * that an echoed value can neither end a log line nor drive a terminal; and the invisible ones
 * that reorder or hide text (`\u202e`, `\u200b`, `\ufeff`, `\u{e0041}`), so that what is shown
 * is what is there.
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => {
    const code = c.codePointAt(0)!;
    const hex = code.toString(16);
    return NAMED[c] ??
      (code < 0x100
        ? `\\x${hex.padStart(2, "0")}`
        : code > 0xffff
        ? `\\u{${hex}}`
        : `\\u${hex.padStart(4, "0")}`);
  });
}

/** A value from outside, fit for a one-line message: secrets cut, control characters escaped. */
export function oneLine(text: string): string {
  return escapeControl(redactUrls(text));
}

/**
 * `text` cut to `max` characters, an ellipsis marking the cut: what another program says is kept
 * in state files, records and alerts only as far as a line is worth reading.
 */
export function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
