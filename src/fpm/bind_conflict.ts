/**
 * Why a start failed when php-fpm's configuration is fine: a port or socket php-fpm listens on
 * is held by another process (any local user can bind a free loopback port, such as a status
 * page's, the moment php-fpm lets go of it). php-fpm says which address in its error log; `ss`
 * says who holds it, and ps whose that process is.
 */
import type { Fs, ProcessRunner } from "../shared/deps.ts";
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
 * nothing of the kind. Never throws.
 */
export async function bindConflict(
  deps: { runner: ProcessRunner; fs: Pick<Fs, "readUntrusted" | "info"> },
  tools: Tools,
  errorLog: string | null,
  owners: readonly number[],
): Promise<string | null> {
  if (errorLog === null || !errorLog.startsWith("/")) return null;
  const text = await deps.fs.readUntrusted(errorLog, { maxBytes: TAIL_BYTES, tail: true, owners })
    .catch(() => "");
  const address = boundAddress(text);
  if (address === null) return null;
  const said = `php-fpm cannot listen on ${escapeControl(address)}: it is in use`;
  if (tools.ss === null) return said;
  const port = /^(?:.*:)?(\d+)$/.exec(address)?.[1];
  let holder: Holder | undefined;
  if (address.startsWith("/")) {
    holder = (await socketHolders(tools.ss, address, deps.runner, deps.fs))?.[0];
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
