/**
 * Why a start failed when php-fpm's configuration is fine: a port or socket php-fpm listens on
 * is held by another process (any local user can bind a free loopback port, such as a status
 * page's, the moment php-fpm lets go of it). php-fpm says which address in its error log; `ss`
 * says who holds it, and ps whose that process is.
 */
import type { Fs, ProcessRunner } from "../shared/deps.ts";
import type { Tools } from "../act/service.ts";
import { escapeControl } from "../shared/redact.ts";

const BIND = /unable to bind listening socket for address '([^']{1,300})': Address already in use/;
/** How much of the error log's end is read: the failed start's last lines. */
const TAIL_BYTES = 16 * 1024;
const TOOL_TIMEOUT_MS = 2000;

/** The address php-fpm last failed to bind, from its error log's `text`, or null. */
export function boundAddress(text: string): string | null {
  let found: string | null = null;
  for (const line of text.split("\n")) found = BIND.exec(line)?.[1] ?? found;
  return found;
}

/** The holder `ss -lpH` names in `output`: `users:(("python3",pid=123,fd=3))`. */
export function holderOf(output: string): { name: string; pid: number } | null {
  const m = /users:\(\("((?:[^"\\]|\\.){1,64})",pid=(\d+),/.exec(output);
  return m === null ? null : { name: m[1]!, pid: Number(m[2]) };
}

/**
 * A sentence naming the address php-fpm could not bind and who holds it, from the error log at
 * `errorLog` (read as a file others may write: `owners` may own it); null when the log says
 * nothing of the kind. Never throws.
 */
export async function bindConflict(
  deps: { runner: ProcessRunner; fs: Pick<Fs, "readUntrusted"> },
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
  const port = /^(?:.*:)?(\d+)$/.exec(address)?.[1];
  const filter = address.startsWith("/")
    ? ["-xlpH", "src", address]
    : port === undefined
    ? null
    : ["-ltnpH", `sport = :${port}`];
  if (tools.ss === null || filter === null) return said;
  try {
    const r = await deps.runner.run(tools.ss, filter, { timeoutMs: TOOL_TIMEOUT_MS });
    const holder = holderOf(r.stdout);
    if (holder === null) return said;
    const who = await deps.runner.run(tools.ps, ["-o", "ruid=", "-q", String(holder.pid)], {
      timeoutMs: TOOL_TIMEOUT_MS,
    });
    const uid = /^\s*(\d+)\s*$/.exec(who.stdout)?.[1];
    return `${said} by pid ${holder.pid} (${escapeControl(holder.name)}${
      uid === undefined ? "" : `, uid ${uid}`
    })`;
  } catch {
    return said;
  }
}
