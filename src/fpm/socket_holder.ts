/**
 * Who listens on a unix socket, by `ss -xlpeH`: the processes that hold its listening descriptor.
 * php-fpm's are its master and workers; anyone else's means whatever answers there is not
 * php-fpm (a socket in www-data's /run/php can be replaced by www-data).
 */
import type { Fs, ProcessRunner } from "../shared/deps.ts";
import { escapeControl } from "../shared/redact.ts";

/** A process holding a socket, as ss names it. */
export interface Holder {
  name: string;
  pid: number;
}

const SS_TIMEOUT_MS = 2000;

/** Every holder `ss -p` names in `output`: `users:(("php-fpm8.2",pid=123,fd=7),(...))`. */
export function holdersOf(output: string): Holder[] {
  return [...output.matchAll(/\("((?:[^"\\]|\\.){1,64})",pid=(\d+),fd=\d+\)/g)].map((m) => ({
    name: m[1]!,
    pid: Number(m[2]),
  }));
}

/**
 * The holders of the listening unix socket reachable at `path`; an empty list when nothing
 * listens there, null when ss cannot say. Never throws.
 *
 * The kernel keeps the name a socket was bound to, not where its file is now: a socket moved
 * aside and another bound at its name are two lines of ss with the same path. The one a client
 * reaches is the one whose file is at `path` now, told by its inode (`ss -e`: `ino:N`).
 */
export async function socketHolders(
  ss: string,
  path: string,
  runner: ProcessRunner,
  fs: Pick<Fs, "info">,
): Promise<Holder[] | null> {
  try {
    const r = await runner.run(ss, ["-xlpeH", "src", path], { timeoutMs: SS_TIMEOUT_MS });
    if (r.code !== 0 || r.timedOut) return null;
    // the lines of that path alone: ss matches a prefix of the path too
    const lines = r.stdout.split("\n").filter((l) => l.trim().split(/\s+/)[4] === path);
    const file = await fs.info(path);
    if (file === null || lines.length === 0) return [];
    const ino = file.ino ?? null;
    const line = ino === null
      ? (lines.length === 1 ? lines[0] : null)
      : lines.find((l) => l.split(/\s+/).includes(`ino:${ino}`));
    if (line === null) return null;
    return line === undefined ? [] : holdersOf(line);
  } catch {
    return null;
  }
}

/** A holder for people: "pid 123 (python3, uid 33)"; its uid from ps, when ps says it. */
export async function describeHolder(
  runner: ProcessRunner,
  ps: string,
  holder: Holder,
): Promise<string> {
  const who = await runner.run(ps, ["-o", "ruid=", "-q", String(holder.pid)], {
    timeoutMs: SS_TIMEOUT_MS,
  }).catch(() => null);
  const uid = who === null ? undefined : /^\s*(\d+)\s*$/.exec(who.stdout)?.[1];
  return `pid ${holder.pid} (${escapeControl(holder.name)}${
    uid === undefined ? "" : `, uid ${uid}`
  })`;
}
