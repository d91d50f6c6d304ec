/**
 * A pause at each probe: while a target is paused (`php-relaunch pause`), its probes are logged
 * and counted and nothing else happens; a pause found expired is removed and its end told.
 */
import type { Verdict } from "../probe/result.ts";
import { logger } from "../shared/log.ts";
import { pausesOf, type TargetContext } from "./context.ts";
import type { Teller } from "./teller.ts";

/** One target's pause, checked at each probe. */
export class PauseCheck {
  /** The answers already logged during the current pause. */
  private readonly answers = new Set<string>();

  constructor(private readonly ctx: TargetContext, private readonly teller: Teller) {}

  /**
   * True while the target is paused: the probe is logged and counted, and nothing else happens
   * (no restart, no alert, no early warning). A pause found expired is removed and its end told.
   */
  async held(verdict: Verdict, label: string): Promise<boolean> {
    const { cfg, target, deps, memory, options } = this.ctx;
    const pauses = pausesOf(cfg, options);
    const pause = await pauses.read(target.name);
    if (pause === null) {
      this.answers.clear();
      return false;
    }
    const now = deps.clock.now();
    if (now < pause.until) {
      // a run of failures while paused is not one to act on when the pause ends
      memory.state = { ...memory.state, failures: 0, timeouts: 0, failingSince: null };
      // each answer once, not once a probe: a long deploy is a few lines
      const seen = this.answers.has(label);
      this.answers.add(label);
      const level = verdict === "healthy" || seen ? "debug" : "info";
      logger[level]("{label} while paused until {until} ({reason}): not acted on.", {
        label,
        until: new Date(pause.until).toISOString(),
        reason: pause.reason,
        target: target.name,
      });
      return true;
    }
    // the first run to find it expired tells it; a run racing it finds nothing to remove
    if (await pauses.remove(target.name).catch(() => false)) {
      this.teller.event(
        "info",
        `Pause by ${pause.by} (${pause.reason}) expired: watching and restarting again.`,
        "PHP watchdog resumed",
        [`Paused at ${new Date(pause.at).toISOString()} until ${
          new Date(pause.until).toISOString()
        }`],
        null,
      );
    }
    return false;
  }
}
