/**
 * Probing a target: its heartbeat (HTTP or FastCGI) and, when it has one, php-fpm's status page,
 * which warns early on a healthy pool, tells a busy pool from a hung one after a timeout, and
 * says whether php-fpm answers while nginx fails.
 */
import type { Policy } from "../config/policy_settings.ts";
import {
  assessPool,
  isBusy,
  poolLine,
  type PoolStatus,
  readStatus,
  warningsOf,
} from "../fpm/status_page.ts";
import { describeFcgiTarget, probeFcgi } from "../probe/fcgi.ts";
import { probeHttp } from "../probe/http.ts";
import { type ProbeResult, verdictOf } from "../probe/result.ts";
import { countPool } from "../record/metrics.ts";
import { unixSocketQueue } from "../fpm/socket_queue.ts";
import type { MasterView } from "../act/master.ts";
import { withProcessTable } from "./process_certainty.ts";
import { checkMemory } from "./memory_watch.ts";
import { listenSocketOf } from "./pool_socket.ts";
import { logger } from "../shared/log.ts";
import { mainPool, type PoolProbe } from "../config/settings.ts";
import type { FcgiTarget } from "../shared/deps.ts";
import type { TargetContext } from "./context.ts";
import type { Teller } from "./teller.ts";

/** The most one read of the status page may take (pm.status_listen answers in milliseconds). */
const STATUS_LIMIT_MS = 1500;
/** The most kinds of early warnings remembered (each pool's own: a few per pool). */
const MAX_WARNED = 64;

/** A target's eyes: the heartbeat, and the pool's own view. */
export class Prober {
  constructor(private readonly ctx: TargetContext, private readonly teller: Teller) {}

  /** One probe of the heartbeat; `stop` abandons it. */
  probe(stop?: AbortSignal): Promise<ProbeResult> {
    return this.probePool(mainPool(this.ctx.target), stop);
  }

  /** One probe of a pool's heartbeat (the target's own, or another pool's); `stop` abandons it. */
  probePool(pool: PoolProbe, stop?: AbortSignal): Promise<ProbeResult> {
    const { target, deps } = this.ctx;
    if (pool.fcgi !== null) {
      return probeFcgi(
        pool.fcgi,
        target.timeoutMs,
        pool.expect,
        deps.fcgiGet,
        deps.clock.now,
        stop,
      );
    }
    return probeHttp(pool.url, target.timeoutMs, pool.expect, deps.httpGet, deps.clock.now, stop);
  }

  /**
   * One read of a status page (by default the target's, which it has). For a pool on a unix
   * socket, whose listen queue php-fpm always reports as 0, the kernel's count of waiting
   * connections replaces it.
   */
  async readStatus(page: FcgiTarget = this.ctx.target.status!): Promise<PoolStatus | string> {
    const { target, deps, cfg } = this.ctx;
    const limit = Math.min(target.timeoutMs, STATUS_LIMIT_MS);
    const s = await readStatus(page, limit, deps.fcgiGet);
    if (typeof s === "string" || cfg.tools.ss === null) return s;
    const socket = await listenSocketOf(this.ctx, s.pool);
    const queue = socket === null ? null : await unixSocketQueue(cfg.tools.ss, socket, deps.runner);
    return queue === null ? s : {
      ...s,
      listenQueue: queue.queued,
      listenQueueLen: queue.backlog,
      maxListenQueue: Math.max(s.maxListenQueue, queue.queued),
    };
  }

  /**
   * Adds what the process table says to a php-fpm failure that counts (see process_certainty.ts);
   * `master`: this step's (read from the table when it was not).
   */
  withProcessTable(result: ProbeResult, master: MasterView): Promise<ProbeResult> {
    return withProcessTable(this.ctx, result, master);
  }

  /** Adds what the status page says to a probe result (and warns early on healthy ones). */
  async withPoolView(
    result: ProbeResult,
    policy: Policy,
    stop?: AbortSignal,
  ): Promise<ProbeResult> {
    const { target, deps, memory } = this.ctx;
    if (target.status === null) return result;
    const verdict = verdictOf(result);
    if (verdict === "healthy") {
      await this.checkPool();
      return result;
    }
    if (verdict === "unreachable" || verdict === "misconfigured") {
      // nginx failed: is php-fpm behind it up? It tells the operator where to look
      const s = await this.readStatus();
      const fpm = typeof s === "string"
        ? { answers: false, detail: s }
        : { answers: true, detail: poolLine(s) };
      return { ...result, fpm };
    }
    const slow = result.kind === "timeout" || result.kind === "overloaded";
    const counts = deps.clock.now() >= memory.state.graceUntil &&
      memory.state.givenUpAt === null;
    return slow && counts ? await this.assessTimeout(result, policy, stop) : result;
  }

  /**
   * After a timeout, tells an overloaded pool from a hung one with two status reads about a
   * second apart, instead of waiting for another timeout. Only when the status page has answered
   * before: a status URL that never worked proves nothing.
   */
  private async assessTimeout(
    result: ProbeResult,
    policy: Policy,
    stop?: AbortSignal,
  ): Promise<ProbeResult> {
    const { ctx } = this;
    const first = await this.readStatus();
    let second = first;
    if (typeof first !== "string") {
      await ctx.deps.clock.sleep(Math.max(policy.confirmDelayMs, 500), stop);
      second = await this.readStatus();
    }
    ctx.lastStatus = { at: ctx.deps.clock.now(), status: second };
    if (typeof first === "string" && ctx.memory.counters.pool === null) return result;
    if (typeof second !== "string") this.remember(second);
    const pool = assessPool(first, second, ctx.target.statusOnPool ? 1 : 0);
    logger.debug("Heartbeat timed out; the pool is {verdict}: {why}.", {
      verdict: pool.verdict,
      why: pool.why,
      target: ctx.target.name,
    });
    return { ...result, pool };
  }

  private remember(s: PoolStatus): void {
    this.ctx.memory.counters = countPool(this.ctx.memory.counters, s);
  }

  /** Reads the pool's memory for its metrics and warnings (see memory_watch.ts). */
  checkMemory(view: MasterView): Promise<void> {
    return checkMemory(this.ctx, view, (warning, details) => this.warnOnce(warning, details));
  }

  /**
   * An early warning, unless the same kind was sent within warn_every; `subject` names what it
   * is of (the pool's, by default; OPcache's).
   */
  warnOnce(
    warning: { kind: string; message: string },
    details: string[],
    subject = "PHP pool warning",
  ): void {
    const { target, deps, memory } = this.ctx;
    const now = deps.clock.now();
    const last = memory.state.warnedAt[warning.kind];
    if (last !== undefined && now - last < target.warnEveryMs) return;
    // only what still holds a warning back is kept, and not more of it than a state file should
    // carry: a worker may rename its own title's pool at will
    const kept = Object.entries(memory.state.warnedAt).filter(([, at]) =>
      now - at < target.warnEveryMs
    ).sort((a, b) => b[1] - a[1]).slice(0, MAX_WARNED - 1);
    memory.state = {
      ...memory.state,
      warnedAt: { ...Object.fromEntries(kept), [warning.kind]: now },
    };
    // an early warning is no incident's alert: it is threaded with none
    this.teller.event(
      "warn",
      `${subject}: ${warning.message}.`,
      subject,
      details,
      null,
    );
  }

  /** Reads the status page of a healthy pool and warns of what comes before an outage. */
  private async checkPool(): Promise<void> {
    const { target, memory } = this.ctx;
    const s = await this.readStatus();
    if (typeof s === "string") {
      logger.debug("Status page: {why}.", { why: s, target: target.name });
      return;
    }
    const previous = memory.counters.pool;
    this.remember(s);
    if (previous === null) return;
    for (const warning of warningsOf(previous, s, target.warn)) {
      const busy = s.workers.filter(isBusy).sort((a, b) => b.durationMs - a.durationMs);
      this.warnOnce(warning, [
        `Pool: ${poolLine(s)}`,
        ...busy.slice(0, 10).map((w) =>
          `  worker ${w.pid} ${w.state} for ${
            (w.durationMs / 1000).toFixed(1)
          } s: ${w.method} ${w.uri} (${w.script})`
        ),
        `Status page: ${describeFcgiTarget(target.status!)}${target.status!.path}`,
        "Nothing was restarted: this is an early warning.",
      ]);
    }
  }
}
