/**
 * The moment php-fpm's master exits, without polling it from here. Deno cannot wait for a process
 * it did not start, and reading /proc needs --allow-all; so a small child waits for it, and the
 * watch wakes on its exit and probes at once, instead of at the next interval:
 * - procps' `pidwait -F FILE` (Debian 12), which waits on a pidfd: it wakes on the exit itself,
 *   costs nothing meanwhile, and reads the pid from a file (root's, in root's only state folder);
 * - else GNU tail's `--pid`, which checks the pid every 0.2 s with kill(pid, 0): a zombie still
 *   passes that check, so it wakes only once the init system has reaped the master.
 */
import type { ExitWatch } from "../shared/deps.ts";
import { SYSTEM_PATH } from "./process.ts";

/** Where tail is (Debian, FreeBSD's coreutils port). */
export const TAIL_CANDIDATES = ["/usr/bin/tail", "/bin/tail"];
/** Where procps' pidwait is. */
export const PIDWAIT_CANDIDATES = ["/usr/bin/pidwait", "/bin/pidwait"];
/** How often tail checks the pid: the most a crash waits to be seen. */
const CHECK_EVERY_S = "0.2";

const never: ExitWatch = { exited: new Promise<void>(() => {}), stop() {} };

/**
 * Watches `pid` with pidwait (its pid written to `note`, a file of root's only state folder), else
 * with tail. A watch that cannot start (neither there, not allowed) never fires: the interval's
 * probes go on as before. Never throws.
 */
export function masterExitWatch(
  pid: number,
  note: string,
  pidwait: readonly string[] = PIDWAIT_CANDIDATES,
  tail: readonly string[] = TAIL_CANDIDATES,
): ExitWatch {
  try {
    // the state folder is root's alone (checked at start-up): nobody else can put a link here
    Deno.writeTextFileSync(note, `${pid}\n`, { mode: 0o600 });
    const watch = spawnWatch(pidwait, ["-F", note]);
    if (watch !== null) return watch;
  } catch {
    // no writing there: tail needs no file
  }
  return spawnWatch(tail, [`--pid=${pid}`, "-s", CHECK_EVERY_S, "-f", "/dev/null"]) ?? never;
}

/** The first of `bins` that starts with `args`, as a watch; null when none does. */
function spawnWatch(bins: readonly string[], args: string[]): ExitWatch | null {
  for (const bin of bins) {
    try {
      const child = new Deno.Command(bin, {
        args,
        stdin: "null",
        stdout: "null",
        stderr: "null",
        env: { PATH: SYSTEM_PATH, LC_ALL: "C" },
      }).spawn();
      // a watcher must never keep the watch process alive by itself
      child.unref();
      let stopped = false;
      // stopped by us is not the master's exit: that one never fires
      const exited = child.status.then((): Promise<void> =>
        stopped ? new Promise<void>(() => {}) : Promise.resolve()
      );
      return {
        exited,
        stop() {
          stopped = true;
          try {
            child.kill("SIGKILL");
          } catch {
            // exited already
          }
        },
      };
    } catch {
      // not there, or not allowed: the next one
    }
  }
  return null;
}
