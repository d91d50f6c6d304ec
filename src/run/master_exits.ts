/**
 * The master's exit between probes, for every loop that waits for its next probe (watch mode's
 * and a cron or mcron run's): one exit watch at a time, on the master last found, so that the
 * wait ends the moment php-fpm's master exits and the crash is probed, and found certain, at once.
 */
import type { Target } from "../config/settings.ts";
import type { Deps, ExitWatch } from "../shared/deps.ts";
import { logger } from "../shared/log.ts";

/**
 * One exit watch at a time, on the master last found. A master whose exit was seen is not
 * watched again (its watch would fire at once, and again): the next master found is. Disposing
 * of it stops the watch, so that no watcher outlives the loop.
 */
export class MasterExits implements Disposable {
  private watched: { pid: number; watch: ExitWatch; exited: AbortSignal; told: boolean } | null =
    null;
  /** The file the watcher may write the master's pid to, beside the target's state. */
  private readonly note: string;

  constructor(
    private readonly deps: Pick<Deps, "watchExit" | "clock">,
    private readonly target: Pick<Target, "name" | "stateFile">,
  ) {
    this.note = `${target.stateFile}.master-pid`;
  }

  /**
   * Sleeps `ms`, or less when `stop` aborts or the master `pid` exits meanwhile (null: no master
   * known, the whole `ms`); true when the master's exit ended it. Each master's exit is told once.
   */
  async sleep(pid: number | null, ms: number, stop?: AbortSignal): Promise<boolean> {
    const exited = this.follow(pid);
    await this.deps.clock.sleep(ms, stop === undefined ? exited : AbortSignal.any([stop, exited]));
    // an exit that has fired is told: it woke this wait, or would wake every later one at once
    if (this.watched !== null && exited.aborted) this.watched.told = true;
    if (!exited.aborted || stop?.aborted) return false;
    logger.debug("php-fpm's master {pid} exited: probing now.", { pid, target: this.target.name });
    return true;
  }

  /** A signal that aborts when `pid` exits (never for null, nor once its exit was told). */
  private follow(pid: number | null): AbortSignal {
    if (pid === null) {
      this.stop();
      return new AbortController().signal;
    }
    if (this.watched?.pid !== pid) {
      this.stop();
      const watch = this.deps.watchExit(pid, this.note);
      const exited = new AbortController();
      watch.exited.then(() => exited.abort(), () => {});
      this.watched = { pid, watch, exited: exited.signal, told: false };
    }
    // its exit told once: the interval's probes go on until another master is found
    return this.watched.told ? new AbortController().signal : this.watched.exited;
  }

  /** Ends the watch (its watcher process with it). */
  stop(): void {
    this.watched?.watch.stop();
    this.watched = null;
  }

  [Symbol.dispose](): void {
    this.stop();
  }
}
