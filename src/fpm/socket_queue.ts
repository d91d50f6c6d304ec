/**
 * A unix socket's accept queue, from the kernel. php-fpm's status page reports "listen queue 0"
 * for a pool on a unix socket whatever waits (it can only count a TCP socket's backlog), so a pool
 * whose workers are all busy looks calm there; `ss -xlH` shows the connections waiting for
 * accept() and the backlog's size.
 */
import type { ProcessRunner } from "../shared/deps.ts";

/** Waiting connections and the most that may wait. */
export interface SocketQueue {
  queued: number;
  backlog: number;
}

/** `ss` answers at once; a slower one is not worth waiting for during an outage. */
const SS_TIMEOUT_MS = 2000;

/**
 * The listening unix socket at `path` in `ss -xlH` output: `u_str LISTEN <queued> <backlog>
 * <path> <inode> * 0`. Null when it is not listed.
 */
export function parseSsListen(output: string, path: string): SocketQueue | null {
  for (const line of output.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[1] !== "LISTEN" || f[4] !== path) continue;
    const [queued, backlog] = [Number(f[2]), Number(f[3])];
    if (Number.isInteger(queued) && Number.isInteger(backlog) && queued >= 0 && backlog >= 0) {
      return { queued, backlog };
    }
  }
  return null;
}

/**
 * The accept queue of the listening unix socket `path`, read with `ss` (absolute path, argument
 * array, timeout). Null when it cannot be read: the status page's own figure then stands.
 */
export async function unixSocketQueue(
  ss: string,
  path: string,
  runner: ProcessRunner,
): Promise<SocketQueue | null> {
  try {
    const r = await runner.run(ss, ["-xlH", "src", path], { timeoutMs: SS_TIMEOUT_MS });
    return r.code === 0 ? parseSsListen(r.stdout, path) : null;
  } catch {
    return null;
  }
}
