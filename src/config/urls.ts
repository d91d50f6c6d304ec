/**
 * The URLs of the configuration, checked for every form (flag, positional, file): a heartbeat
 * (http, https, fcgi, fcgi+unix), a status page, a webhook, a metrics address. Each check says
 * what is wrong in a sentence that never shows a secret (userinfo, a webhook's path).
 */
import { fcgiTargetOf, isFcgiUrl } from "../probe/fcgi.ts";
import { publicUrl, webhookName, withoutUserinfo } from "../shared/redact.ts";

/**
 * The ports `fetch` refuses to use (the Fetch standard's "bad ports"): a heartbeat or webhook on
 * one of them can never be reached, so it is refused when the configuration is read.
 */
export const BAD_PORTS: ReadonlySet<number> = new Set([
  1,
  7,
  9,
  11,
  13,
  15,
  17,
  19,
  20,
  21,
  22,
  23,
  25,
  37,
  42,
  43,
  53,
  69,
  77,
  79,
  87,
  95,
  101,
  102,
  103,
  104,
  109,
  110,
  111,
  113,
  115,
  117,
  119,
  123,
  135,
  137,
  139,
  143,
  161,
  179,
  389,
  427,
  465,
  512,
  513,
  514,
  515,
  526,
  530,
  531,
  532,
  540,
  548,
  554,
  556,
  563,
  587,
  601,
  636,
  989,
  990,
  993,
  995,
  1719,
  1720,
  1723,
  2049,
  3659,
  4045,
  5060,
  5061,
  6000,
  6566,
  6665,
  6666,
  6667,
  6668,
  6669,
  6697,
  10080,
]);

/** The longest URL taken; nginx refuses a longer request line anyway. */
export const MAX_URL_LENGTH = 8192;

/** Why `url` (http or https) cannot be fetched, or null. */
function fetchProblem(url: URL): string | null {
  const port = url.port === "" ? null : Number(url.port);
  return port !== null && BAD_PORTS.has(port)
    ? `port ${port} is one that fetch refuses to use (the Fetch standard's "bad ports"): choose another port`
    : null;
}

/** Checks a heartbeat URI; a sentence saying what is wrong, or the URL. */
export function checkUrl(value: string, fcgiOnly: boolean): URL | string {
  if (value.length > MAX_URL_LENGTH) {
    return `Cannot use URI "${
      withoutUserinfo(value)
    }": it has ${value.length} characters, at most ${MAX_URL_LENGTH}`;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `Cannot parse URI "${
      withoutUserinfo(value)
    }": expected an http://, https://, fcgi:// or fcgi+unix:// URL`;
  }
  if (url.username !== "" || url.password !== "") {
    // credentials would end up in logs and mails
    return `Cannot use URI "${publicUrl(url)}": credentials in the URI are not supported`;
  }
  if (isFcgiUrl(url)) {
    const target = fcgiTargetOf(url);
    return typeof target === "string" ? `Cannot use URI "${publicUrl(url)}": ${target}` : url;
  }
  if (fcgiOnly) {
    return `Cannot use status URI "${
      publicUrl(url)
    }": expected fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `Cannot use URI "${
      publicUrl(url)
    }": expected the scheme http://, https://, fcgi:// or fcgi+unix://`;
  }
  if (url.hostname === "") return `Cannot use URI "${publicUrl(url)}": expected a host name`;
  const problem = fetchProblem(url);
  return problem === null ? url : `Cannot use URI "${publicUrl(url)}": ${problem}`;
}

/**
 * Checks a webhook URL (or another URL whose path is a secret: `what` names it) without ever
 * echoing its path: a sentence, or the URL.
 */
export function checkWebhook(value: string, what = "webhook"): URL | string {
  let url: URL;
  try {
    if (value.length > MAX_URL_LENGTH) throw new RangeError("too long");
    url = new URL(value);
  } catch {
    // not shown: a webhook's path is its secret, and a URL that does not parse has no path to cut
    return `Cannot parse the ${what} URL (${value.length} characters, not shown: it holds a secret): expected an http:// or https:// URL of at most ${MAX_URL_LENGTH} characters`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `Cannot use ${what} URL ${webhookName(url)}: expected http:// or https://`;
  }
  const problem = fetchProblem(url);
  return problem === null ? url : `Cannot use ${what} URL ${webhookName(url)}: ${problem}`;
}

/** host:port on loopback: the endpoint must not be reachable from the network. */
export function parseListen(value: string): { hostname: string; port: number } | string {
  const m = /^(127(?:\.\d{1,3}){3}|localhost|\[::1\]):(\d{1,5})$/.exec(value.trim());
  const port = Number(m?.[2]);
  if (m === null || !(port >= 1 && port <= 65535)) {
    return `Cannot use metrics address "${value}": expected 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (loopback only)`;
  }
  return { hostname: m[1]!.replace(/^\[|\]$/g, ""), port };
}
