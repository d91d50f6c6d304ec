/**
 * Drain before acting: what watch mode tells HAProxy's agent-check, target by target. A target
 * drains while it is paused, while its pool is saturated, while a restart of it is about to run
 * or runs, and after either until `success_threshold` healthy probes in a row; else it is up.
 * Before a gentle rung (kill_stuck, reload, restart) on a failure the process table has not made
 * certain, the restart waits `drain_wait` after the drain began (its evidence is gathered
 * meanwhile), so that the balancer's next check sees it and sends new requests elsewhere; a
 * certain crash or hang is acted on at once: nothing left there could finish a request, and the
 * agent says drain until the pool answers again.
 */
import type { Rung } from "../act/restart.ts";
import type { BalancerSettings } from "../config/balancer_settings.ts";
import type { Target } from "../config/settings.ts";
import type { ProbeResult } from "../probe/result.ts";
import {
  AGENT_LIMITS,
  type AgentEndpoint,
  type AgentState,
  serveAgentCheck,
} from "../record/agent_check.ts";
import type { Counters } from "../record/metrics.ts";
import type { Clock } from "../shared/deps.ts";
import { ConfigError, describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";

/** Why a target drains. */
export type DrainReason = "paused" | "saturated" | "restarting" | "crash" | "recovering";

/** The rungs that leave requests in flight to finish: worth draining for first. */
export const GENTLE_RUNGS: ReadonlySet<Rung> = new Set(["kill_stuck", "reload", "restart"]);

/** What one probe of a step showed. */
export interface Seen {
  healthy: boolean;
  paused: boolean;
  saturated: boolean;
}

/**
 * Whether the status page read since `before` (the counters' pool figures as they were when the
 * step began) shows a saturated pool: requests waiting in its listen queue, or "max children
 * reached" grown. False when the page was not read this step (or never): unknown is no signal.
 */
export function saturated(before: Counters["pool"], after: Counters["pool"]): boolean {
  if (after === null || after === before) return false;
  return after.listenQueue > 0 ||
    (before !== null && before.name === after.name &&
      after.maxChildrenReached > before.maxChildrenReached);
}

/**
 * How long a restart waits for the balancer before its first rung: `drainWaitMs` when its rungs
 * include a gentle one and the failure is not certain; else 0.
 */
export function drainWaitFor(
  first: ProbeResult,
  rungs: readonly Rung[],
  drainWaitMs: number,
): number {
  return first.certain === undefined && rungs.some((r) => GENTLE_RUNGS.has(r)) ? drainWaitMs : 0;
}

/** One target's word to the balancer, from its probes and restarts. */
export class TargetDrain {
  private paused = false;
  private saturated = false;
  private acting: "restarting" | "crash" | null = null;
  /** Healthy probes in a row still owed before the target is up again. */
  private owed = 0;
  /** When a restart's first rung may run. */
  private actAt: number | null = null;

  constructor(
    readonly name: string,
    private readonly clock: Clock,
    /** Healthy probes in a row that end a drain (the target's `success_threshold`). */
    public successThreshold: number,
    private readonly drainWaitMs: number,
  ) {}

  /** Why it drains now; null when it is up. */
  get reason(): DrainReason | null {
    if (this.acting !== null) return this.acting;
    if (this.paused) return "paused";
    if (this.saturated) return "saturated";
    return this.owed > 0 ? "recovering" : null;
  }

  /** What the agent says for this target. */
  get state(): AgentState {
    return this.reason === null ? "up" : "drain";
  }

  /** A step's probe: paused and saturated drain while they last, healthy probes end a drain. */
  observe(seen: Seen): void {
    this.changing(() => {
      this.paused = seen.paused;
      this.saturated = seen.saturated;
      if (seen.paused || seen.saturated || this.acting !== null) this.owed = this.successThreshold;
      else if (this.owed > 0) this.owed = seen.healthy ? this.owed - 1 : this.successThreshold;
    });
  }

  /**
   * A restart of `first` on `rungs` begins: drain now; {@link settle} waits for the balancer. Begun
   * again while it drains (the fleet's slot wait, then the restart), the drain counts from the
   * first time.
   */
  beginRestart(first: ProbeResult, rungs: readonly Rung[]): void {
    const waitMs = drainWaitFor(first, rungs, this.drainWaitMs);
    const actAt = waitMs > 0 ? this.clock.now() + waitMs : null;
    this.actAt = actAt !== null && this.acting !== null && this.actAt !== null
      ? Math.min(this.actAt, actAt)
      : actAt;
    this.changing(() => this.acting = first.certain === undefined ? "restarting" : "crash");
  }

  /** Waits what is left of `drain_wait` since the restart began (nothing for a certain failure). */
  async settle(): Promise<void> {
    if (this.actAt === null) return;
    const left = this.actAt - this.clock.now();
    this.actAt = null;
    if (left <= 0) return;
    logger.info("Draining at the balancer: acting in {s} s.", {
      s: (left / 1000).toFixed(1),
      target: this.name,
    });
    await this.clock.sleep(left);
  }

  /** The restart is over: the target drains until `success_threshold` healthy probes. */
  endRestart(): void {
    this.actAt = null;
    this.changing(() => {
      this.acting = null;
      this.owed = this.successThreshold;
    });
  }

  /** Runs `change`, and logs when it turns the agent's answer. */
  private changing(change: () => void): void {
    const was = this.reason;
    change();
    const now = this.reason;
    if ((was === null) !== (now === null)) {
      logger.info("HAProxy agent: {state}{why}.", {
        state: now === null ? "up" : "drain",
        why: now === null ? "" : ` (${now})`,
        target: this.name,
      });
    }
  }
}

/** Watch mode's agent: one drain per target, and the listener that answers for them. */
export class Balancer {
  private readonly drains = new Map<string, TargetDrain>();
  private readonly stopper = new AbortController();
  private readonly endpoint: AgentEndpoint;

  /**
   * Starts answering on the settings' address.
   * @throws {ConfigError} when it cannot listen there (in use, not this host's address).
   */
  constructor(private readonly settings: BalancerSettings, private readonly clock: Clock) {
    const { hostname, port } = settings.listen;
    const state = () => this.state();
    try {
      this.endpoint = serveAgentCheck(settings.listen, state, this.stopper.signal);
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse)) {
        throw new ConfigError([
          `Cannot answer HAProxy's agent-check on ${hostname}:${port}: ${describeError(err)}`,
        ]);
      }
      // held by another process: php-fpm is still watched and restarted, and the agent answers
      // once the address is free (said once, as the listener does)
      this.endpoint = serveAgentCheck(settings.listen, state, this.stopper.signal, AGENT_LIMITS, {
        keepTrying: true,
      });
    }
    logger.info("Answering HAProxy's agent-check on {address} for {what}.", {
      address: hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`,
      what: settings.target === null ? "every target" : `target ${settings.target}`,
    });
  }

  /** The port it listens on. */
  get port(): number {
    return this.endpoint.port;
  }

  /** The drain of `target`, kept across reloads (its threshold as the target now has it). */
  forTarget(target: Target): TargetDrain {
    let drain = this.drains.get(target.name);
    if (drain === undefined) {
      drain = new TargetDrain(
        target.name,
        this.clock,
        target.policy.successThreshold,
        this.settings.drainWaitMs,
      );
      this.drains.set(target.name, drain);
    }
    drain.successThreshold = target.policy.successThreshold;
    return drain;
  }

  /** Forgets the targets a reload removed. */
  keepOnly(names: readonly string[]): void {
    for (const name of this.drains.keys()) if (!names.includes(name)) this.drains.delete(name);
  }

  /**
   * The answer: the chosen target's; without one, drain when any target drains (one server of
   * the balancer is the whole host).
   */
  state(): AgentState {
    const chosen = this.settings.target;
    const drains = [...this.drains.values()].filter((d) => chosen === null || d.name === chosen);
    return drains.some((d) => d.state === "drain") ? "drain" : "up";
  }

  /** Stops answering; resolves once every connection is closed. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.endpoint.finished;
  }
}
