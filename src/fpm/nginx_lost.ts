/**
 * The requests nginx lost when php-fpm's children died: its error log's "upstream prematurely
 * closed connection" and "recv() failed (104: Connection reset by peer)" lines, at the seconds of
 * the deaths. nginx's log belongs to www-data on Debian, who can add any line to it: what it says
 * is shown (escaped, by the alert) as nginx's log says it, and decides nothing.
 */
import type { Fs } from "../shared/deps.ts";
import { clip } from "../shared/redact.ts";

/** Debian's (and most packages') nginx error log. */
export const NGINX_ERROR_LOG = "/var/log/nginx/error.log";

/** How much of nginx's error log's end is read: the last minute's lines of a busy site. */
const NGINX_TAIL_BYTES = 1024 * 1024;
/** A request line shown is cut at this many characters: visitors choose them. */
const MAX_REQUEST = 200;
/** The most distinct requests listed. */
const MAX_REQUESTS = 10;

/** One request nginx lost, and how many times in the seconds looked at. */
export interface LostRequest {
  /** "GET /cart.php", as nginx's log wrote it (the protocol left out). */
  request: string;
  count: number;
}

/** What nginx's log says of the deaths' seconds, or why it was not read. */
export type NginxLost = { lost: LostRequest[] } | { error: string };

const LOST =
  /^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2}) \[error\] \d+#\d+: (?:\*\d+ )?(?:upstream prematurely closed connection|recv\(\) failed \(104: Connection reset by peer\)) while reading [^,]*, client: [^,]*,.*? request: "([A-Z]{1,16} [^" ]{1,4096})(?: HTTP\/[\d.]+)?"(?:, upstream: "([^"]*)")?/;

/** nginx's name of php-fpm's `listen` address: `fastcgi://unix:/run/php/x.sock:`, `fastcgi://127.0.0.1:9000`. */
function upstreamMatches(upstream: string, listen: string): boolean {
  const to = upstream.replace(/^fastcgi:\/\//, "");
  if (listen.startsWith("/")) return to === `unix:${listen}:` || to === `unix:${listen}`;
  const port = /(\d+)$/.exec(listen)?.[1];
  return port !== undefined && to.endsWith(`:${port}`);
}

/**
 * The requests nginx's error log `lines` name as lost at one of `seconds` (epoch seconds, with a
 * second's slack either side: nginx and php-fpm see a death a moment apart), most often first.
 * `listen`: the pool's address; a line naming another upstream is another pool's.
 */
export function lostRequests(
  lines: readonly string[],
  seconds: ReadonlySet<number>,
  listen: string | null,
): LostRequest[] {
  const counts = new Map<string, number>();
  for (const line of lines) {
    const m = LOST.exec(line);
    if (m === null) continue;
    const [, y, mo, d, h, mi, s, request, upstream] = m;
    const at = Math.floor(
      new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)).getTime() /
        1000,
    );
    if (!seconds.has(at) && !seconds.has(at - 1) && !seconds.has(at + 1)) continue;
    if (listen !== null && upstream !== undefined && !upstreamMatches(upstream, listen)) continue;
    const key = clip(request!, MAX_REQUEST);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([request, count]) => ({ request, count }))
    .sort((a, b) => b.count - a.count || a.request.localeCompare(b.request))
    .slice(0, MAX_REQUESTS);
}

/**
 * The requests nginx lost at the deaths' `seconds`, from the end of its error log, read as a
 * file www-data may write (`owners`: root and nginx's user; in folders of root's).
 */
export async function readLostRequests(
  fs: Pick<Fs, "readUntrusted">,
  path: string,
  owners: readonly number[],
  seconds: ReadonlySet<number>,
  listen: string | null,
): Promise<NginxLost> {
  let text: string;
  try {
    text = await fs.readUntrusted(path, { maxBytes: NGINX_TAIL_BYTES, tail: true, owners });
  } catch (err) {
    return {
      error: err instanceof Deno.errors.NotFound
        ? "it does not exist"
        : err instanceof Error
        ? err.message
        : String(err),
    };
  }
  return { lost: lostRequests(text.split("\n"), seconds, listen) };
}
