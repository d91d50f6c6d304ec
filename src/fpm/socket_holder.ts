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
/** Every listening unix socket of a busy host, and more: a listing cut short is not read. */
const SS_MAX_BYTES = 1024 * 1024;

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
 * The kernel keeps the name a socket was bound by, not where its file is now: a socket moved
 * aside and another bound at its name are two lines of ss with the same name, and a socket bound
 * as `/run/php//x.sock` or by a relative name is one whose name is not the path. The one a client
 * reaches is the one whose file is at `path` now: told by its inode and device (`ss -e`), among
 * every listener, whatever its name.
 */
export async function socketHolders(
  ss: string,
  path: string,
  runner: ProcessRunner,
  fs: Pick<Fs, "info">,
): Promise<Holder[] | null> {
  try {
    const file = await fs.info(path);
    if (file === null) return [];
    const ino = file.ino ?? null;
    const args = ino === null ? ["-xlpeH", "src", path] : ["-xlpeH"];
    const r = await runner.run(ss, args, { timeoutMs: SS_TIMEOUT_MS, maxBytes: SS_MAX_BYTES });
    if (r.code !== 0 || r.timedOut || r.truncated) return null;
    const rows = r.stdout.split("\n").map((l) => l.trim().split(/\s+/));
    if (ino === null) {
      // by name alone (ss matches a prefix of the path too): only when there is one
      const named = rows.filter((f) => f[4] === path);
      if (named.length > 1) return null;
      return named.length === 0 ? [] : holdersOf(named[0]!.join(" "));
    }
    const line = rows.find((f) => f.includes(`ino:${ino}`) && sameDevice(f, file.dev ?? null));
    return line === undefined ? [] : holdersOf(line.join(" "));
  } catch {
    return null;
  }
}

/**
 * Whether ss's `dev:A/B` is the device `dev` (as lstat gives it); true when either is not told.
 * ss prints the kernel's encoded device as `0/DEV` (iproute2 6.1); the major/minor spelling is
 * taken too.
 */
function sameDevice(fields: readonly string[], dev: number | null): boolean {
  const told = fields.find((f) => f.startsWith("dev:"));
  if (dev === null || told === undefined) return true;
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  return told === `dev:0/${dev}` || told === `dev:${major}/${minor}`;
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
