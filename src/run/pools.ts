/**
 * A service's pools, each probed and judged on its own. While one pool answers, the service is up:
 * a pool that fails beside it is freed by killing its own stuck workers (never by a restart of the
 * service, which would interrupt the pools that serve), and the service's policy sees the pool
 * that answers. Only when every pool fails, or the master is gone, does the service's policy see
 * the failure, and restart it as for a single pool.
 */
import { certainty } from "../act/process_table.ts";
import type { Policy } from "../config/policy_settings.ts";
import { mainPool, type PoolProbe } from "../config/settings.ts";
import { labelOf, type ProbeResult, verdictOf } from "../probe/result.ts";
import { publicUrl } from "../shared/redact.ts";
import { logger } from "../shared/log.ts";
import type { TargetContext } from "./context.ts";
import {
  afterKill,
  afterOverload,
  afterServiceRestart,
  decidePool,
  type PoolState,
  splitPools,
} from "./pool_policy.ts";
import type { Prober } from "./prober.ts";
import { lookForMaster, masterIdentity } from "./master_watch.ts";
import { freePool } from "./pool_freeing.ts";
import type { MasterView } from "../act/master.ts";
import type { Teller } from "./teller.ts";
import { seconds } from "../shared/time_units.ts";
import { countPoolProbe } from "../record/metrics.ts";

/** One pool's probe in this step. */
export interface PoolResult {
  pool: PoolProbe;
  result: ProbeResult;
}

/** What the service's policy is to judge this step, and whether a pool asks for a quick re-probe. */
export interface Judged {
  result: ProbeResult;
  confirm: boolean;
  /** False when `result` is another pool's: the target's status page says nothing of it. */
  own: boolean;
}

/** The pools of one target beside its own: probing, judging, freeing. */
export class PoolKeeper {
  /** The pool misconfigurations already logged, so that each is said once. */
  private readonly misconfigured = new Set<string>();

  constructor(
    private readonly ctx: TargetContext,
    private readonly prober: Prober,
    private readonly teller: Teller,
  ) {}

  /** Probes the target's other pools, all at once; none when it has none. */
  probe(stop?: AbortSignal): Promise<PoolResult[]> {
    return Promise.all(
      this.ctx.target.pools.map(async (pool) => ({
        pool,
        result: await this.prober.probePool(pool, stop),
      })),
    );
  }

  /**
   * Judges this step's pools (`main`: the target's own probe): what the service's policy is to
   * see, after freeing the pools that fail while another answers.
   */
  async judge(
    main: ProbeResult,
    others: readonly PoolResult[],
    master: MasterView,
    policy: Policy,
  ): Promise<Judged> {
    const { target, memory } = this.ctx;
    const all = [{ pool: mainPool(target), result: main }, ...others];
    for (const p of all) {
      this.sayMisconfigured(p);
      memory.counters = countPoolProbe(
        memory.counters,
        p.pool.name,
        verdictOf(p.result) === "healthy",
      );
    }
    const { healthy, failing } = splitPools(all);
    if (failing.length === 0) {
      for (const p of healthy) await this.decide(p, policy, []);
      return { result: main, confirm: false, own: true };
    }
    if (healthy.length === 0) {
      // every pool fails: the service's failure, with the target's own probe when it is one
      const own = verdictOf(main) === "php_down";
      return { result: own ? main : failing[0]!.result, confirm: false, own };
    }
    // a pool answers, so the master runs, unless the process table says it is gone (its workers
    // may serve a while after it): that is the service's to restart
    const view = master.rows === null ? await lookForMaster(this.ctx) : master;
    const crash = certainty(view, masterIdentity(target), memory.state.masterPid, "crash");
    if (crash !== null) {
      const first = failing[0]!;
      return { result: { ...first.result, certain: crash }, confirm: false, own: first === all[0] };
    }
    let confirm = false;
    const serving = healthy.map((p) => p.pool.name);
    for (const p of all) confirm = (await this.decide(p, policy, serving)) || confirm;
    // the service answers through a pool: that is what its policy sees
    const own = verdictOf(main) === "healthy";
    return { result: own ? main : healthy[0]!.result, confirm, own };
  }

  /** After the service was restarted: each pool is judged afresh (its end still told). */
  restarted(policy: Policy): void {
    const { memory, deps } = this.ctx;
    const now = deps.clock.now();
    memory.pools = Object.fromEntries(
      Object.entries(memory.pools).map(([name, p]) => [name, afterServiceRestart(p, now, policy)]),
    );
  }

  /** While paused: a run of failures is not one to act on when the pause ends. */
  paused(): void {
    const { memory } = this.ctx;
    memory.pools = Object.fromEntries(
      Object.entries(memory.pools).map(([name, p]) => [name, { ...p, failures: 0, timeouts: 0 }]),
    );
  }

  /** Decides for one pool and does it; true when its probe asks for a quick re-probe. */
  private async decide(
    p: PoolResult,
    policy: Policy,
    serving: string[],
  ): Promise<boolean> {
    const { memory, deps } = this.ctx;
    const name = p.pool.name;
    const since = memory.pools[name]?.failingSince ?? null;
    const d = decidePool(memory.pools[name], p.result, deps.clock.now(), policy);
    this.remember(name, d.state);
    if (d.action === "recovered") {
      this.teller.event(
        "info",
        `${labelOf(p.result)} PHP pool ${name} recovered${
          since === null ? "" : ` after ${seconds(deps.clock.now() - since)}`
        }.`,
        "PHP pool recovered",
        this.teller.probeDetails(p.result, p.pool.url),
        null,
      );
    } else if (d.action === "hold") {
      this.teller.event(
        "error",
        `${labelOf(p.result)} PHP pool ${name} still failing after ${
          d.state!.kills.length
        } attempts to kill its stuck workers in ${
          seconds(policy.restartWindowMs)
        } (max_restarts); nothing more is done until it answers while pool ${
          serving.join(", ")
        } serves (restarting ${this.ctx.target.fpm.service} would interrupt it).`,
        "PHP pool given up",
        [
          ...this.teller.probeDetails(p.result, p.pool.url),
          `Failing since ${new Date(d.state!.failingSince!).toISOString()}`,
          "Look at the pool's slow log and its scripts; php-relaunch reset (or SIGHUP) starts again.",
        ],
        null,
      );
    } else if (d.action === "kill_stuck") {
      const { ctx, prober, teller } = this;
      const ok = await freePool(
        { ctx, prober, teller },
        p,
        policy,
        serving,
        d.state!.overloadedAt !== null,
      );
      const kept = memory.pools[name]!;
      this.remember(
        name,
        ok === null ? afterOverload(kept, deps.clock.now()) : afterKill(kept, ok),
      );
      if (ok !== null) memory.counters = countPoolProbe(memory.counters, name, ok, ok);
    } else if (verdictOf(p.result) === "php_down") {
      logger.debug("{label} pool {pool}: failing while pool {serving} serves; confirming.", {
        label: labelOf(p.result),
        pool: name,
        serving: serving.join(", "),
        target: this.ctx.target.name,
      });
    }
    return d.confirm;
  }

  private remember(name: string, state: PoolState | null): void {
    const pools = { ...this.ctx.memory.pools };
    if (state === null) delete pools[name];
    else pools[name] = state;
    this.ctx.memory.pools = pools;
  }

  /** A pool probe answering, but not as a ping (404, the wrong body): said once, at warn. */
  private sayMisconfigured(p: PoolResult): void {
    if (verdictOf(p.result) !== "misconfigured" || p.pool.name === this.ctx.target.poolName) {
      return;
    }
    const key = `${p.pool.name} ${labelOf(p.result)}`;
    if (this.misconfigured.has(key)) return;
    this.misconfigured.add(key);
    logger.warn("{label} pool {pool}: its probe {url} is not a ping ({detail}); check its url.", {
      label: labelOf(p.result),
      pool: p.pool.name,
      url: publicUrl(p.pool.url),
      detail: p.result.detail,
      target: this.ctx.target.name,
    });
  }
}
