/**
 * Who listens on a unix socket, by `ss -xlpeH`: the processes that hold its listening descriptor.
 * php-fpm's are its master and workers; anyone else's means whatever answers there is not
 * php-fpm (a socket in www-data's /run/php can be replaced by www-data).
 */
import type { Fs, ProcessRunner, UnixListens } from "../shared/deps.ts";
import { escapeControl } from "../shared/redact.ts";

/** A process holding a socket, as ss names it. */
export interface Holder {
  name: string;
  pid: number;
}

/** ss -p reads every process's descriptors: a host with many of them takes a while. */
const SS_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 1000;
/** The listeners of one name: a few lines. A listing cut short is not read. */
const SS_MAX_BYTES = 64 * 1024;

/** Every holder `ss -p` names in `output`: `users:(("php-fpm8.2",pid=123,fd=7),(...))`. */
export function holdersOf(output: string): Holder[] {
  return [...output.matchAll(/\("((?:[^"\\]|\\.){1,64})",pid=(\d+),fd=\d+\)/g)].map((m) => ({
    name: m[1]!,
    pid: Number(m[2]),
  }));
}

/**
 * The holders of the listening unix socket reachable at `path`: an empty list when nothing
 * listens there, "unnamed" when something does that ss names not, null when it cannot be told.
 * Never throws.
 *
 * The kernel keeps the name a socket was bound by, not where its file is now: a socket moved
 * aside and another bound at its name are two listeners of that name. The one a client reaches
 * is the one whose file is at `path` now, told by its inode and device (`ss -e`). ss is asked
 * for the listeners of that name only, so that its answer stays small however many sockets
 * others make; a file at the path that none of them is, is one left behind (nothing answers) or
 * one bound by another spelling of the path (`/run/php//x.sock`, a relative name): a connection
 * tells which.
 */
export async function socketHolders(
  ss: string,
  path: string,
  deps: { runner: ProcessRunner; fs: Pick<Fs, "info">; unixListens: UnixListens },
): Promise<Holder[] | "unnamed" | null> {
  try {
    const file = await deps.fs.info(path);
    if (file === null) return [];
    const r = await deps.runner.run(ss, ["-xlpeH", "src", path], {
      timeoutMs: SS_TIMEOUT_MS,
      maxBytes: SS_MAX_BYTES,
    });
    if (r.code !== 0 || r.timedOut || r.truncated) return null;
    // that very name (ss matches a prefix of it too)
    const named = r.stdout.split("\n").map((l) => l.trim().split(/\s+/)).filter((f) =>
      f[4] === path
    );
    const ino = file.ino ?? null;
    if (ino === null) {
      if (named.length > 1) return null;
      return named.length === 0 ? [] : holdersOf(named[0]!.join(" "));
    }
    const line = named.find((f) => f.includes(`ino:${ino}`) && sameDevice(f, file.dev ?? null));
    if (line !== undefined) return holdersOf(line.join(" "));
    const listens = await deps.unixListens(path, CONNECT_TIMEOUT_MS);
    return listens === true ? "unnamed" : listens === false ? [] : null;
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
