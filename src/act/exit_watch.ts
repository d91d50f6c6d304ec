/**
 * The moment php-fpm's master exits, without polling it from here. Deno cannot wait for a process
 * it did not start, and reading /proc needs --allow-all; so a small child waits for it: GNU tail's
 * `--pid` (coreutils), which checks the pid every 0.2 s with kill(pid, 0), costs no measurable
 * CPU, and exits when the process is gone. The watch wakes on that exit and probes at once, instead
 * of at the next interval.
 */
import type { ExitWatch } from "../shared/deps.ts";
import { SYSTEM_PATH } from "./process.ts";

/** Where tail is (Debian, FreeBSD's coreutils port). */
export const TAIL_CANDIDATES = ["/usr/bin/tail", "/bin/tail"];
/** How often tail checks the pid: the most a crash waits to be seen. */
const CHECK_EVERY_S = "0.2";

const never: ExitWatch = { exited: new Promise<void>(() => {}), stop() {} };

/**
 * Watches `pid` with `tail --pid=PID -s 0.2 -f /dev/null`. A watch that cannot start (no tail, not
 * allowed) never fires: the interval's probes go on as before. Never throws.
 */
export function tailExitWatch(pid: number, tail = TAIL_CANDIDATES): ExitWatch {
  for (const bin of tail) {
    try {
      const child = new Deno.Command(bin, {
        args: [`--pid=${pid}`, "-s", CHECK_EVERY_S, "-f", "/dev/null"],
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
  return never;
}
