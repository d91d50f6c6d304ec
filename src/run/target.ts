/**
 * run/ owns running the watch: the cron form and watch mode, one target's loop step (probe →
 * decide → act → tell → remember), the pure policy and schedule, the policy's memory on disk
 * and systemd's notifications. It is the top stage below the command line: it may import every
 * other stage.
 *
 * This module: one watched target, made of a prober, a responder and a teller that share its
 * memory; the cron form and watch mode both step it.
 */
import { retryOutbox } from "../alert/outbox.ts";
import { channels } from "../alert/queue.ts";
import type { Policy } from "../config/policy_settings.ts";
import type { Config, Target } from "../config/settings.ts";
import { labelOf, type ProbeResult, type Verdict, verdictOf } from "../probe/result.ts";
import { countProbe, renderMetrics, writeMetricsFile } from "../record/metrics.ts";
import type { Deps } from "../shared/deps.ts";
import { describeError, ExitCode } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { type Action, configPassesAgain, decide, noticeMaster } from "./recovery_policy.ts";
import { masterOfStep } from "./master_watch.ts";
import { Prober } from "./prober.ts";
import { OpcacheWatch } from "./opcache_watch.ts";
import { PoolKeeper } from "./pools.ts";
import { withSocketHolder } from "./pool_socket.ts";
import { Responder } from "./responder.ts";
import type { Timing } from "./schedule.ts";
import { type MonitorOptions, outboxOf, type TargetContext } from "./context.ts";
import { fileStateStore, type Memory, type StateStore } from "./state.ts";
import { Teller } from "./teller.ts";
import { CrashWatch } from "./child_crashes.ts";
import { PauseCheck } from "./pause_check.ts";
import { actOnUpstream, clearUpstreamWaits, withUpstream } from "./upstream_incident.ts";
import { saturated } from "./drain.ts";

/** What one step did, for the schedule and the exit code. */
export interface Step {
  verdict: Verdict;
  /** The probe asks for a quick confirmation. */
  confirm: boolean;
  /** When a restart ended, or null when none was made. */
  restartEndedAt: number | null;
  restartOk: boolean;
}

/** Retries the alerts earlier runs could not deliver, until `signal` aborts. Never throws. */
export async function retryAlerts(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions,
  signal?: AbortSignal,
): Promise<void> {
  await retryOutbox(outboxOf(cfg, options), channels(deps, cfg), deps.clock.now(), signal);
}

/** One watched target: its memory, and the prober, responder and teller that act on it. */
export class TargetWatch {
  readonly ctx: TargetContext;
  readonly prober: Prober;
  readonly responder: Responder;
  readonly teller: Teller;
  readonly pools: PoolKeeper;
  /** The children that die on a signal, from php-fpm's error log. */
  readonly crashes: CrashWatch;
  readonly opcache: OpcacheWatch;
  private readonly pause: PauseCheck;

  constructor(
    cfg: Config,
    target: Target,
    deps: Deps,
    options: MonitorOptions,
    memory: Memory,
    store: StateStore | null = null,
  ) {
    this.ctx = {
      cfg,
      target,
      deps,
      options,
      outbox: outboxOf(cfg, options),
      memory,
      save: store && (() => store.save(this.ctx.memory)),
      cronRun: null,
      lastStatus: null,
      listenSockets: new Map(),
    };
    this.teller = new Teller(this.ctx);
    this.prober = new Prober(this.ctx, this.teller);
    this.responder = new Responder(this.ctx, this.prober, this.teller);
    this.pools = new PoolKeeper(this.ctx, this.prober, this.teller);
    this.crashes = new CrashWatch(this.ctx, this.teller);
    this.opcache = new OpcacheWatch(this.ctx, this.prober);
    this.pause = new PauseCheck(this.ctx, this.teller);
  }

  /** What to save: the policy's state and the counters. */
  get memory(): Memory {
    return this.ctx.memory;
  }

  /** Probes once and carries out the policy's decision; null when `stop` abandoned the probe. */
  async step(policy: Policy, stop?: AbortSignal): Promise<Step | null> {
    // the service's other pools are probed at the same time as its own heartbeat
    const [probed, others] = await Promise.all([this.prober.probe(stop), this.pools.probe(stop)]);
    // stopping: the probe was abandoned, and its result means nothing
    if (stop?.aborted) return null;
    logger.debug("Probe: {label} in {ms} ms.", { label: labelOf(probed), ms: probed.ms });
    const memory = this.ctx.memory;
    // the pool's figures before this step's status read, to tell a saturated pool
    const poolBefore = memory.counters.pool;
    const [verdict, label] = [verdictOf(probed), labelOf(probed)];
    memory.counters = countProbe(memory.counters, verdict, label, probed.ms);
    memory.lastProbe = { at: this.ctx.deps.clock.now(), label, verdict, ms: probed.ms };
    if (await this.paused(verdict, label)) {
      this.ctx.drain?.observe({ healthy: verdict === "healthy", paused: true, saturated: false });
      this.pools.paused();
      await this.crashes.check(true);
      return { verdict, confirm: false, restartEndedAt: null, restartOk: false };
    }
    // the pool's master, found once: for the pools, the memory, the process table, and to notice
    // one started by others
    const failing = [probed, ...others.map((o) => o.result)].some((r) =>
      verdictOf(r) !== "healthy"
    );
    const master = await masterOfStep(this.ctx, failing);
    // with several pools, a pool that fails while another answers is handled on its own: the
    // service's policy sees the one that answers
    const judged = others.length === 0
      ? { result: probed, confirm: false, own: true }
      : await this.pools.judge(probed, others, master, policy);
    // the target's status page is of its own pool: it says nothing of another pool's failure
    const viewed = judged.own
      ? await this.prober.withPoolView(judged.result, policy, stop)
      : judged.result;
    if (stop?.aborted) return null;
    if (verdictOf(viewed) === "healthy") await this.prober.checkMemory(master);
    // OPcache is asked only of a php-fpm that answers: a failing one has no time to spare
    if (verdictOf(viewed) === "healthy") await this.opcache.check();
    const held = await withSocketHolder(
      this.ctx,
      await this.prober.withProcessTable(viewed, master),
      master,
    );
    // what the stuck workers wait on: a peer most of them wait on holds restarts back
    const result = await withUpstream(this.ctx, this.prober, held, master);
    if (verdictOf(result) === "healthy") clearUpstreamWaits(this.ctx);
    // the fleet learns of the failure before any restart of it is decided
    await this.ctx.options.fleet?.observe(
      this.ctx.target.name,
      verdictOf(result) === "php_down",
      this.teller,
    );
    this.ctx.drain?.observe({
      healthy: verdictOf(result) === "healthy",
      paused: false,
      saturated: saturated(poolBefore, memory.counters.pool),
    });
    const step = await this.carryOut(result, policy, master.live, stop);
    // crashing children are told, never restarted: whatever the heartbeat says
    await this.crashes.check();
    return { ...step, confirm: step.confirm || judged.confirm };
  }

  /** Decides what `result` calls for under `policy` and does it: log, alert, restart. */
  async carryOut(
    result: ProbeResult,
    policy: Policy,
    master: number | null,
    stop?: AbortSignal,
  ): Promise<Step> {
    const { memory, deps } = this.ctx;
    // a master someone else started changes what the failures mean: look before judging
    const seen = noticeMaster(memory.state, master, deps.clock.now(), policy);
    memory.state = seen.state;
    for (const a of seen.actions) this.log(a);
    // starts wait for a configuration php-fpm's test rejected: fixed, php-fpm is started at once
    if (
      memory.state.configRejectedAt !== null && verdictOf(result) === "php_down" &&
      await this.responder.configPassesNow()
    ) {
      const fixed = configPassesAgain(memory.state);
      memory.state = fixed.state;
      for (const a of fixed.actions) this.log(a);
    }
    const decision = decide(memory.state, result, deps.clock.now(), policy);
    memory.state = decision.state;
    let restartEndedAt: number | null = null;
    let restartOk = false;
    for (const action of decision.actions) {
      if (action.type === "log") this.log(action);
      else if (action.type === "alert") this.teller.alert(action, result, policy);
      else if (action.type === "upstream") {
        await actOnUpstream(this.ctx, this.prober, this.teller, result, action, policy);
      } else if (this.noTimeToRestart()) {
        // the failure stays counted: the next run's first failed probe restarts at once
        logger.info("{label} PHP failed near the end of this run: the next run restarts it.", {
          label: labelOf(result),
          target: this.ctx.target.name,
        });
      } else {
        const retry = action.retry === true;
        const restart = () => this.responder.restart(result, policy, retry);
        const fleet = this.ctx.options.fleet;
        // the fleet's slot wait drains and counts as restarting; a stop or reload ends it
        const ok = fleet
          ? await this.responder.beforeRestart(
            result,
            retry,
            () =>
              fleet.restart(this.ctx.target.name, this.teller, restart, {
                certain: result.certain !== undefined,
                signal: stop,
              }),
          )
          : null;
        // null: the fleet holds restarts (a shared cause); the next failed probe asks again
        if (fleet && ok === null) continue;
        restartOk = ok ?? await restart();
        restartEndedAt = deps.clock.now();
        // the service's restart replaced every pool's workers
        this.pools.restarted(policy);
      }
    }
    this.teller.repeatOpenIncident();
    return {
      verdict: verdictOf(result),
      confirm: decision.next === "confirm",
      restartEndedAt,
      restartOk,
    };
  }

  /**
   * Whether the cron run's period is over: the next run, already due, restarts at its first
   * failed probe, instead of this one overlapping it.
   */
  private noTimeToRestart(): boolean {
    const { cronRun, deps } = this.ctx;
    return cronRun !== null && deps.clock.now() >= cronRun.endsAt;
  }

  /** True while the target is paused (see pause_check.ts). */
  async paused(verdict: Verdict, label: string): Promise<boolean> {
    return await this.pause.held(verdict, label);
  }

  private log(action: Extract<Action, { type: "log" }>): void {
    logger[action.level]("{message}", { message: action.message, target: this.ctx.target.name });
  }
}

/** A target's watch, with its memory loaded from the store it will be saved to. */
export async function loadWatch(
  cfg: Config,
  target: Target,
  deps: Deps,
  options: MonitorOptions,
): Promise<{ watch: TargetWatch; store: StateStore }> {
  const store = options.store ?? fileStateStore(target.stateFile);
  return {
    store,
    watch: new TargetWatch(cfg, target, deps, options, await store.load(), store),
  };
}

/** The pauses of a target's policy, for nextDue; after a restart the grace period is waited. */
export function timingOf(policy: Policy): Timing {
  return {
    intervalMs: policy.intervalMs,
    confirmDelayMs: policy.confirmDelayMs,
    settleMs: policy.gracePeriodMs,
  };
}

/** The exit code for the last probe of a run. */
export function exitFor(last: { verdict: Verdict; restartOk: boolean }): ExitCode {
  switch (last.verdict) {
    case "healthy":
      return ExitCode.Ok;
    case "php_down":
      return last.restartOk ? ExitCode.Ok : ExitCode.PhpDown;
    case "unreachable":
      return ExitCode.Unreachable;
    case "misconfigured":
      return ExitCode.Misconfigured;
  }
}

/** The worst of several targets' exit codes: php-fpm down first, then nginx, then setup. */
export function worstExit(codes: readonly ExitCode[]): ExitCode {
  for (const code of [ExitCode.PhpDown, ExitCode.Unreachable, ExitCode.Misconfigured]) {
    if (codes.includes(code)) return code;
  }
  return codes.find((c) => c !== ExitCode.Ok) ?? ExitCode.Ok;
}

/**
 * Writes every target's metrics, from the state each has on disk (a target another run holds
 * is included as last saved). A failure is logged: metrics never change the run's outcome.
 */
export async function writeMetrics(
  cfg: Config,
  options: MonitorOptions,
  live: ReadonlyMap<string, TargetWatch> = new Map(),
): Promise<void> {
  if (cfg.metricsFile === null) return;
  try {
    const targets = await Promise.all(cfg.targets.map(async (t) => ({
      name: t.name,
      counters: live.get(t.name)?.memory.counters ??
        (await (options.store ?? fileStateStore(t.stateFile)).load()).counters,
    })));
    await writeMetricsFile(cfg.metricsFile, await renderMetrics(targets));
  } catch (err) {
    logger.error("Cannot write the metrics file {path}: {error}", {
      path: cfg.metricsFile,
      error: describeError(err),
    });
  }
}
