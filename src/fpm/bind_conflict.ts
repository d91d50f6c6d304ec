/**
 * Why a start failed when php-fpm's configuration is fine: a port or socket php-fpm listens on
 * is held by another process (any local user can bind a free loopback port, such as a status
 * page's, the moment php-fpm lets go of it). php-fpm says which address in its error log; `ss`
 * says who holds it, and ps whose that process is.
 */
import type { Fs, ProcessRunner, UnixListens } from "../shared/deps.ts";
import type { Tools } from "../act/service.ts";
import { escapeControl } from "../shared/redact.ts";
import { describeHolder, type Holder, holdersOf, socketHolders } from "./socket_holder.ts";

/**
 * php-fpm's words for an address in use: a TCP port, or a unix socket another process answers on.
 * Only as a line of its own, from its start (`[date] ERROR: `, with `pid N, function: ` at
 * log_level = debug): a request's URI quoted in a slow-request warning can say anything.
 */
const BIND =
  /^\[[^\]]{1,40}\] ERROR: (?:pid \d+, [^:]{1,120}: )?(?:unable to bind listening socket for address '([^']{1,300})': Address already in use|Another FPM instance seems to already listen on (\/\S{1,300}))/;
/** How much of the error log's end is read: the failed start's last lines. */
const TAIL_BYTES = 16 * 1024;
const TOOL_TIMEOUT_MS = 2000;

/** The address php-fpm last failed to bind, from its error log's `text`, or null. */
export function boundAddress(text: string): string | null {
  let found: string | null = null;
  for (const line of text.split("\n")) {
    const m = BIND.exec(line);
    if (m !== null) found = m[1] ?? m[2] ?? null;
  }
  return found;
}

/**
 * A sentence naming the address php-fpm could not bind and who holds it, from the error log at
 * `errorLog` (read as a file others may write: `owners` may own it); null when the log says
 * nothing of the kind, or names an address none of `listens` (php-fpm's configured `listen` and
 * `pm.status_listen` values) is: a request's query string can put a line of its own in the log
 * (php-fpm quotes it unescaped), and whatever it names must not be blamed. Never throws.
 */
export async function bindConflict(
  deps: { runner: ProcessRunner; fs: Pick<Fs, "readUntrusted" | "info">; unixListens: UnixListens },
  tools: Tools,
  errorLog: string | null,
  owners: readonly number[],
  listens: readonly string[],
): Promise<string | null> {
  if (errorLog === null || !errorLog.startsWith("/")) return null;
  const text = await deps.fs.readUntrusted(errorLog, { maxBytes: TAIL_BYTES, tail: true, owners })
    .catch(() => "");
  const address = boundAddress(text);
  if (address === null || !listens.some((l) => sameAddress(l, address))) return null;
  const said = `php-fpm cannot listen on ${escapeControl(address)}: it is in use`;
  if (tools.ss === null) return said;
  const port = /^(?:.*:)?(\d+)$/.exec(address)?.[1];
  let holder: Holder | undefined;
  if (address.startsWith("/")) {
    const found = await socketHolders(tools.ss, address, deps);
    holder = Array.isArray(found) ? found[0] : undefined;
  } else if (port !== undefined) {
    const r = await deps.runner.run(tools.ss, ["-ltnpH", `sport = :${port}`], {
      timeoutMs: TOOL_TIMEOUT_MS,
    }).catch(() => null);
    holder = r === null ? undefined : holdersOf(r.stdout)[0];
  }
  return holder === undefined
    ? said
    : `${said} by ${await describeHolder(deps.runner, tools.ps, holder)}`;
}

/**
 * Whether php-fpm's `listen` value (a path, `port`, `host:port`, `[::1]:port`) is the address its
 * error log names: the same path, or the same TCP port (it logs `0.0.0.0:9001` for `9001`).
 */
function sameAddress(listen: string, logged: string): boolean {
  if (listen.startsWith("/") || logged.startsWith("/")) return listen === logged;
  const port = (a: string) => /:(\d+)$/.exec(a)?.[1] ?? /^(\d+)$/.exec(a.trim())?.[1];
  return port(listen) !== undefined && port(listen) === port(logged);
}
