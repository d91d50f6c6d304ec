/** Single-instance runs: an exclusive `flock` on a lock file, held for the life of the process. */
import { dirname } from "node:path";
import type { Clock } from "./deps.ts";
import { ConfigError, describeError } from "./errors.ts";
import { logger } from "./log.ts";
import { ensurePrivateDir, openRegularFile, privateProblem, readRegularText } from "./safe_file.ts";

/** A held lock; closing the file releases it (so does the process dying, even by SIGKILL). */
export interface HeldLock extends Disposable {
  readonly path: string;
  /**
   * Writes who holds it ("watch 1234", "cron 1234") into the file, for runs that find it held:
   * a cron run waits for another cron run, not for watch mode, which never lets go.
   */
  say(holder: string): Promise<void>;
}

/** Takes a lock without waiting: {@link tryLock}, or a fake in tests; `holder` reads who has it. */
export type TryLock = ((path: string) => Promise<HeldLock | null>) & {
  holder?: (path: string) => Promise<string | null>;
};

/** A holder's line is short; more is not ours. */
const MAX_HOLDER = 64;

/** Who last said they hold the lock at `path` (see {@link HeldLock.say}), or null. */
export async function lockHolder(path: string): Promise<string | null> {
  try {
    const text = await readRegularText(path, MAX_HOLDER);
    return text.trim() || null;
  } catch {
    return null;
  }
}

/**
 * Takes the exclusive lock on `path` without waiting, creating the file (and its folder, mode
 * 0700) if needed. Returns null when another process holds it. The file is never deleted:
 * deleting a lock file lets two processes each lock a different inode. A folder or file that
 * another user could have made or could write is refused: whoever made the file first could hold
 * its lock for good, and silence us.
 * @throws {ConfigError} when the folder or file is a symlink, not ours or writable by others;
 * other errors of opening unchanged.
 */
export async function tryLock(path: string): Promise<HeldLock | null> {
  await ensurePrivateDir(dirname(path), "lock folder");
  // no truncate: opening never changes what is in the file
  const file = await openRegularFile(
    path,
    { read: true, write: true, create: true, mode: 0o600 },
    "lock file",
  );
  try {
    const info = await file.stat();
    const problem = privateProblem(
      { ...info, isSymlink: false, mode: (info.mode ?? 0) & 0o7777 },
      Deno.uid(),
      "file",
    );
    if (problem !== null) throw new ConfigError([`Refusing lock file "${path}": ${problem}`]);
    if (!(await file.tryLock(true))) {
      file.close();
      return null;
    }
  } catch (err) {
    file.close();
    throw err;
  }
  return {
    path,
    async say(holder) {
      await file.truncate(0);
      await file.seek(0, Deno.SeekMode.Start);
      await file.write(new TextEncoder().encode(`${holder}\n`));
    },
    [Symbol.dispose]() {
      file.close();
    },
  };
}
tryLock.holder = lockHolder;

/**
 * Says in `lock` that a run of `kind` (cron, watch) of this process holds it. A failure is
 * logged, not thrown: the lock is held all the same, and other runs then wait as for cron.
 */
export async function sayHolder(lock: HeldLock, kind: "cron" | "watch"): Promise<void> {
  try {
    await lock.say(`${kind} ${Deno.pid}`);
  } catch (err) {
    logger.warn("Cannot write the holder into {lock}: {error}", {
      lock: lock.path,
      error: describeError(err),
    });
  }
}

/** How {@link waitForLock} waits: what it tries, how often, and until when. */
export interface LockWait {
  /** Takes the lock without waiting: null while another holds it. */
  take: () => Promise<HeldLock | null>;
  /** The time, and the sleep between tries (a fake in tests). */
  clock: Pick<Clock, "now" | "sleep">;
  /** The sleep between two tries, in ms: fixed, or of the time the sleep begins. */
  pollMs: number | ((now: number) => number);
  /** Whether there is still time at `now` to sleep and try again: the deadline. Default: yes. */
  timeLeft?: (now: number) => boolean;
  /** Ends the wait (after the try under way); it is passed to each sleep too. */
  signal?: AbortSignal;
  /** Asked after each try that finds the lock held: true gives up at once (held for good). */
  giveUp?: () => Promise<boolean>;
  /** Called once, when the first try finds the lock held and the wait begins. */
  onWait?: () => void;
  /** Called before each sleep (a heartbeat while waiting). */
  onSleep?: () => void;
}

/**
 * Takes a lock, waiting for its holder to let go: tries, then sleeps and tries again while
 * there is time left and `signal` has not aborted. The lock, or null with `gaveUp` when
 * `giveUp` said so, or with `gaveUp` false when time ran out or the wait was aborted.
 */
export async function waitForLock(
  wait: LockWait,
): Promise<{ lock: HeldLock; gaveUp: false } | { lock: null; gaveUp: boolean }> {
  const { take, clock, signal } = wait;
  let lock = await take();
  if (lock !== null) return { lock, gaveUp: false };
  if (await wait.giveUp?.()) return { lock: null, gaveUp: true };
  wait.onWait?.();
  while (!signal?.aborted && (wait.timeLeft?.(clock.now()) ?? true)) {
    wait.onSleep?.();
    const ms = typeof wait.pollMs === "number" ? wait.pollMs : wait.pollMs(clock.now());
    await (signal === undefined ? clock.sleep(ms) : clock.sleep(ms, signal));
    lock = await take();
    if (lock !== null) return { lock, gaveUp: false };
    if (await wait.giveUp?.()) return { lock: null, gaveUp: true };
  }
  return { lock: null, gaveUp: false };
}
