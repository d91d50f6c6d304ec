/**
 * Responding to a failure the policy says to act on: the evidence first (within ~2 s), then the
 * restart ladder (php-fpm, and php-cgi when asked), then the incident record, the policy's
 * memory of the restart, and one alert that says what was done and what was seen.
 */
import {
  DEFAULT_RELAUNCH,
  relaunch,
  type RelaunchContext,
  type RelaunchReport,
  type Rung,
  type StuckWorker,
} from "../act/restart.ts";
import type { Policy } from "../config/policy_settings.ts";
import { mainPool, type PoolProbe } from "../config/settings.ts";
import { captureEvidence, type Evidence } from "../fpm/evidence.ts";
import { testFpmConfig } from "../fpm/selftest.ts";
import { bindConflict } from "../fpm/bind_conflict.ts";
import { readFpmConfig } from "../fpm/config.ts";
import { findOomKills } from "../fpm/oom.ts";
import { type PoolStatus, stuckWorkers } from "../fpm/status_page.ts";
import { describeFcgiTarget } from "../probe/fcgi.ts";
import { labelOf, type ProbeResult, verdictOf } from "../probe/result.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import type { Prober } from "./prober.ts";
import type { TargetContext } from "./context.ts";
import type { Teller } from "./teller.ts";
import { type CannotStart, recordRestart, reportRestart } from "./restart_report.ts";
import { lookForMaster, masterIdentity } from "./master_watch.ts";

/**
 * The rungs for this failure. A certain crash or hang leaves nothing for the gentle rungs to
 * work on (no master to signal, nothing that answers a stop): the `kill` rung (the pool's
 * leftovers killed, then start) is what they would end on, so it goes first when it is there.
 */
export function rungsFor(
  first: ProbeResult,
  rungs: readonly Rung[],
  retry = false,
): readonly Rung[] {
  // a retry after giving up: the gentle rungs already failed, so one attempt, the ladder's last
  if (retry) return rungs.slice(-1);
  return first.certain !== undefined && rungs.includes("kill") ? ["kill"] : rungs;
}

/** What a relaunch of the target's service may touch, and its limits. */
export function relaunchContext(ctx: TargetContext): RelaunchContext {
  const { cfg, deps, target, options } = ctx;
  return {
    init: cfg.init,
    tools: cfg.tools,
    runner: deps.runner,
    clock: deps.clock,
    fs: deps.fs,
    options: {
      ...(options.relaunch ?? { ...DEFAULT_RELAUNCH, startTimeoutMs: target.startTimeoutMs }),
      ...(ctx.cronRun === null ? {} : { deadline: ctx.cronRun.deadline }),
    },
  };
}

/**
 * What is known of `pool` before it is acted on, within about {@link EVIDENCE_LIMIT_MS}: the
 * status read by the hang check when it is fresh and of this pool, else a new read; `masterPid`:
 * the pool's master, as last found (see master_watch.ts).
 */
export async function poolEvidence(
  ctx: TargetContext,
  pool: PoolProbe,
  masterPid: number | null,
): Promise<Evidence> {
  const { target, deps, cfg, lastStatus } = ctx;
  const fresh = lastStatus !== null && deps.clock.now() - lastStatus.at < STATUS_FRESH_MS &&
    typeof lastStatus.status !== "string" && pool.status === target.status;
  const known = fresh ? lastStatus!.status as PoolStatus : null;
  const source = {
    status: pool.status,
    processName: target.fpm.processName,
    masterPid,
    fpmConfig: target.fpmConfig,
    listen: pool.fcgi === null ? null : describeFcgiTarget(pool.fcgi),
    tools: cfg.tools,
  };
  return await captureEvidence(source, deps, EVIDENCE_LIMIT_MS, known);
}

/** The workers the evidence's status page shows on one request for `limitMs` or longer. */
export function stuckOf(evidence: Evidence, limitMs: number): StuckWorker[] {
  const status = evidence.status;
  if (status === null) return [];
  return stuckWorkers(status, limitMs).map((w) => ({
    pid: w.pid,
    pool: status.pool,
    startedAt: w.startedAt ?? 0,
  }));
}

/** How long before the first failed probe an OOM kill may have caused it. */
const OOM_LOOKBACK_MS = 60_000;

/** The most the evidence may delay a restart. */
const EVIDENCE_LIMIT_MS = 2000;
/** A status read younger than this is evidence enough; older, it is read again. */
const STATUS_FRESH_MS = 3000;
/** How often a rejected configuration is tested again while php-fpm stays down. */
export const CONFIG_RECHECK_MS = 5000;

/** A target's hands: the restart, and its record. */
export class Responder {
  /** True while a relaunch runs: slow (bounded by its commands' timeouts), not hung. */
  restarting = false;
  /** When the configuration was last tested while starts waited for it. */
  private configCheckedAt: number | null = null;

  constructor(
    private readonly ctx: TargetContext,
    private readonly prober: Prober,
    private readonly teller: Teller,
  ) {}

  /**
   * Runs `wait` (the fleet's slot wait, and the restart once it is let go) as part of a restart of
   * `first`: the balancer drains from its start, and the loop counts as restarting (slow, bounded
   * by `slot_wait`, not hung: the liveness checks let it be).
   */
  async beforeRestart<T>(first: ProbeResult, retry: boolean, wait: () => Promise<T>): Promise<T> {
    this.ctx.drain?.beginRestart(first, rungsFor(first, this.ctx.target.rungs, retry));
    this.restarting = true;
    try {
      return await wait();
    } finally {
      this.restarting = false;
      this.ctx.drain?.endRestart();
    }
  }

  /**
   * Restarts php-fpm (and php-cgi when asked); true when the heartbeat is healthy again. `retry`:
   * a single attempt after giving up.
   */
  async restart(first: ProbeResult, policy: Policy, retry = false): Promise<boolean> {
    const rungs = rungsFor(first, this.ctx.target.rungs, retry);
    // the balancer is told first: new requests go elsewhere while the evidence is gathered
    this.ctx.drain?.beginRestart(first, rungs);
    this.restarting = true;
    // said on disk before the first command, so that `status` shows it while it lasts
    this.ctx.memory.restartingSince = this.ctx.deps.clock.now();
    await this.checkpoint();
    try {
      const { memory, deps, target, cfg } = this.ctx;
      logger.debug("{label} PHP failed ({detail}); relaunching {service}.", {
        label: labelOf(first),
        detail: first.detail,
        service: target.fpm.service,
      });
      const since = memory.state.incident?.since ?? memory.state.failingSince ?? deps.clock.now();
      // the master that failed (as last found), for its pool's processes and the kernel's word
      const failedMaster = memory.state.masterPid;
      const evidence = await poolEvidence(this.ctx, mainPool(target), failedMaster);
      // drain_wait since the drain began, before a gentle rung on a failure not certain
      await this.ctx.drain?.settle();
      const reports = await this.relaunchAll(evidence, rungs);
      // the master we started, so that one started by someone else later is told apart
      const master = (await lookForMaster(this.ctx)).live;
      memory.state = { ...memory.state, masterPid: master ?? memory.state.masterPid };
      const cannotStart = reports[0]!.ok ? null : await this.whyNoStart(evidence);
      // the kernel's word on what ended the pool's processes, from a minute before the failure
      const owner = {
        service: target.fpm.service,
        masters: [failedMaster, memory.state.masterPid].filter((pid) => pid !== null),
      };
      const oom = await findOomKills(target.fpm.processName, owner, since - OOM_LOOKBACK_MS, {
        journalctl: cfg.init === "systemd" ? cfg.tools.journalctl : null,
        dmesg: cfg.tools.dmesg,
      }, deps);
      const findings = { cannotStart, oom };
      await recordRestart(this.ctx, first, evidence, reports[0]!, findings);
      const restart = { first, policy, since, evidence, reports, retry };
      return reportRestart(this.ctx, this.teller, restart, findings);
    } finally {
      this.ctx.drain?.endRestart();
      this.restarting = false;
      this.ctx.memory.restartingSince = null;
    }
  }

  /**
   * Why a start failed: php-fpm's own configuration test names the file and line that stop it;
   * with a configuration that passes, its error log may name an address another process holds.
   */
  private async whyNoStart(evidence: Evidence): Promise<CannotStart | null> {
    const { target, deps, cfg } = this.ctx;
    const test = await testFpmConfig(target.fpm.processName, target.fpmConfig, deps);
    if (test?.ok === false) {
      return {
        source: `Configuration test (${test.command})`,
        errors: test.errors,
        rejected: true,
      };
    }
    // the master writes php-fpm's error log, as root
    const config = target.fpmConfig === null
      ? null
      : await readFpmConfig(deps.fs, target.fpmConfig);
    const listens = (config?.pools ?? []).flatMap((p) => [p.listen, p.statusListen])
      .filter((l): l is string => l !== null);
    const taken = await bindConflict(deps, cfg.tools, evidence.errorLogFile, [0], listens);
    return taken === null
      ? null
      : { source: "php-fpm's error log", errors: [taken], rejected: false };
  }

  /**
   * While starts wait for a fixed configuration: whether php-fpm's test passes now, asked at most
   * every {@link CONFIG_RECHECK_MS} (the test parses files and exits: cheap, but not free). False
   * when it fails or cannot be run.
   */
  async configPassesNow(): Promise<boolean> {
    const { target, deps } = this.ctx;
    const now = deps.clock.now();
    if (this.configCheckedAt !== null && now - this.configCheckedAt < CONFIG_RECHECK_MS) {
      return false;
    }
    this.configCheckedAt = now;
    const test = await testFpmConfig(target.fpm.processName, target.fpmConfig, deps);
    return test?.ok === true;
  }

  /** Saves the memory mid-step; a failure is logged: the restart matters more. */
  private async checkpoint(): Promise<void> {
    try {
      await this.ctx.save?.();
    } catch (err) {
      logger.warn("Cannot save the state before the restart: {error}", {
        error: describeError(err),
        target: this.ctx.target.name,
      });
    }
  }

  /** The ladder for php-fpm, then php-cgi's kill rung when it is relaunched too. */
  private async relaunchAll(
    evidence: Evidence,
    rungs: readonly Rung[],
  ): Promise<RelaunchReport[]> {
    const { target, memory } = this.ctx;
    const tools = relaunchContext(this.ctx);
    const reports = [
      await relaunch(
        {
          ...masterIdentity(target),
          pidFile: target.pidFile,
          knownMaster: memory.state.masterPid,
          rungs,
          stuck: stuckOf(evidence, target.stuckAfterMs),
          ...(target.status === null ? {} : {
            poolHasRoom: async () => {
              const s = await this.prober.readStatus();
              return typeof s === "string" ? null : s.idle > 0;
            },
          }),
        },
        tools,
        async () => verdictOf(await this.prober.probe()) === "healthy",
      ),
    ];
    // php-cgi is a fallback behind the same heartbeat: its processes running is all we can check
    if (target.cgi !== null) {
      reports.push(
        await relaunch(
          {
            ...target.cgi,
            fpmConfig: null,
            pidFile: null,
            knownMaster: null,
            rungs: ["kill"],
            byName: true,
          },
          tools,
          () => Promise.resolve(true),
        ),
      );
    }
    return reports;
  }
}
