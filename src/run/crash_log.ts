/**
 * Reading the children's deaths from php-fpm's error log, or from the journal when php-fpm logs to
 * syslog: only the lines added since the last look, from the cursor kept in the target's memory.
 */
import { type ChildDeath, parseFileDeaths, parseJournalDeaths } from "../fpm/child_deaths.ts";
import type { FpmConfig } from "../fpm/config.ts";
import { followFile, followJournal } from "../fpm/log_follow.ts";
import { logger } from "../shared/log.ts";
import type { TargetContext } from "./context.ts";
import type { CrashMemory } from "./crash_policy.ts";
import { errorLogOf } from "./crash_alert.ts";

/** A target's reader of its children's deaths; a reason it cannot read is logged once. */
export class CrashLog {
  /** The last reason the log could not be read, said once. */
  private note: string | null = null;

  constructor(private readonly ctx: TargetContext) {}

  /** The deaths logged since the last look, and where the reading now stands. */
  async newDeaths(
    config: FpmConfig | null,
    was: CrashMemory,
  ): Promise<{ deaths: ChildDeath[]; memory: Omit<CrashMemory, "pools"> }> {
    const { cfg, target, deps } = this.ctx;
    const log = errorLogOf(config);
    if (log === "syslog") {
      if (cfg.tools.journalctl === null) {
        this.say("php-fpm logs to syslog, and there is no journalctl to read it");
        return { deaths: [], memory: { file: was.file, journal: was.journal } };
      }
      const r = await followJournal(
        deps.runner,
        cfg.tools.journalctl,
        target.fpm.processName,
        was.journal,
        deps.clock.now(),
      );
      this.say(r.note);
      return { deaths: parseJournalDeaths(r.lines), memory: { file: was.file, journal: r.cursor } };
    }
    // php-fpm's master, root, writes its own log: a file of another owner is not its
    const r = await followFile(deps.fs, log, was.file, [0]);
    this.say(r.note);
    return { deaths: parseFileDeaths(r.lines), memory: { file: r.cursor, journal: was.journal } };
  }

  /** Logs why the log was not read, once for each new reason. */
  private say(note: string | null): void {
    if (note === null || note === this.note) {
      this.note = note ?? this.note;
      return;
    }
    this.note = note;
    logger.warn("Child crash loops: {note}", { note, target: this.ctx.target.name });
  }
}
