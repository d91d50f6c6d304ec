/**
 * Upstream incidents: the pool's workers all wait on one peer (a database that stopped answering,
 * an API, an NFS mount). After a php-fpm failure, the stuck workers' connections and kernel waits
 * are looked at (see fpm/upstream.ts); when most wait on one peer, the policy holds restarts back
 * (a restart drops every request in flight and the new workers block again at once), allows a
 * kill round or as many as `upstream_kill_rounds` says, and tells it once. It is over when the
 * heartbeat answers, or when the workers no longer wait on that peer.
 */
import { relaunch } from "../act/restart.ts";
import type { MasterView } from "../act/master.ts";
import type { Policy } from "../config/policy_settings.ts";
import { mainPool } from "../config/settings.ts";
import { evidenceLines } from "../fpm/evidence.ts";
import { isBusy, type PoolStatus, type Worker } from "../fpm/status_page.ts";
import { lookAtWaits, sharedWait, waitCounts } from "../fpm/upstream.ts";
import { labelOf, type ProbeResult, type UpstreamWait, verdictOf } from "../probe/result.ts";
import type { Action } from "./recovery_policy.ts";
import type { Prober } from "./prober.ts";
import { poolEvidence, relaunchContext, stuckOf } from "./responder.ts";
import { lookForMaster, masterIdentity } from "./master_watch.ts";
import { logIncident, type TargetContext } from "./context.ts";
import type { Teller } from "./teller.ts";
import { seconds } from "../shared/time_units.ts";

/** A status read younger than this is used instead of a new one. */
const STATUS_FRESH_MS = 3000;

/**
 * Adds what the pool's workers wait on to a php-fpm failure: an upstream when most stuck workers
 * (at least 2) wait on one peer, or, while an upstream incident is open, when most busy workers
 * still wait on its peer (the successors of killed workers are not stuck yet, but blocked all the
 * same). Only the live master's own workers are looked at (its children, in its group, by the
 * process table), and only with the status page (which says who is busy, and for how long) and
 * `ss`. A master gone or stopped is php-fpm's own failure: left as it is.
 */
export async function withUpstream(
  ctx: TargetContext,
  prober: Prober,
  result: ProbeResult,
  master: MasterView,
): Promise<ProbeResult> {
  const { target, cfg, deps, memory } = ctx;
  if (verdictOf(result) !== "php_down" || result.certain !== undefined) return result;
  if (target.status === null || cfg.tools.ss === null) return result;
  const status = await statusNow(ctx, prober);
  if (status === null) return result;
  const view = master.rows === null ? await lookForMaster(ctx) : master;
  const live = view.live;
  const rows = view.rows;
  if (live === null || rows === null) return result;
  if (rows.find((p) => p.pid === live)?.state === "T") return result;
  // a status page can be forged (www-data's /run/php): its pids count only as the master's workers
  const busy = status.workers.filter((w) =>
    isBusy(w) &&
    rows.some((p) => p.pid === w.pid && p.ppid === live && p.pgid === live && p.state !== "Z")
  );
  if (busy.length === 0) return result;
  const waits = await lookAtWaits(deps.runner, cfg.tools, busy.map((w) => w.pid));
  if (waits === null) return result;
  memory.counters = {
    ...memory.counters,
    upstream: { pool: status.pool, waits: waitCounts(busy.map((w) => w.pid), waits) },
  };
  const open = memory.state.incident?.kind === "upstream" ? memory.state.incident.peer : undefined;
  if (open !== undefined) {
    const still = busy.filter((w) => waits.get(w.pid)?.includes(open));
    if (still.length * 2 > busy.length) {
      return { ...result, upstream: waitOf(open, still, busy.length) };
    }
  }
  const stuck = busy.filter((w) => w.durationMs >= target.stuckAfterMs);
  const shared = sharedWait(stuck.map((w) => w.pid), waits);
  if (shared === null) return result;
  const blocked = stuck.filter((w) => shared.pids.includes(w.pid));
  return { ...result, upstream: waitOf(shared.peer, blocked, stuck.length) };
}

/** Forgets the waits the metrics show, once the heartbeat answers. */
export function clearUpstreamWaits(ctx: TargetContext): void {
  if (ctx.memory.counters.upstream) {
    ctx.memory.counters = { ...ctx.memory.counters, upstream: undefined };
  }
}

function waitOf(peer: string, blocked: readonly Worker[], of: number): UpstreamWait {
  return {
    peer,
    blocked: blocked.length,
    of,
    forMs: Math.max(0, ...blocked.map((w) => w.durationMs)),
  };
}

/** The pool's status: the hang check's when fresh, else a new read; null when it does not answer. */
async function statusNow(ctx: TargetContext, prober: Prober): Promise<PoolStatus | null> {
  const last = ctx.lastStatus;
  if (last !== null && ctx.deps.clock.now() - last.at < STATUS_FRESH_MS) {
    return typeof last.status === "string" ? null : last.status;
  }
  const s = await prober.readStatus();
  ctx.lastStatus = { at: ctx.deps.clock.now(), status: s };
  return typeof s === "string" ? null : s;
}

/** One line of an upstream incident, for the log and the alert. */
export function upstreamLine(up: UpstreamWait): string {
  return `${up.blocked} of ${up.of} workers blocked on ${up.peer} for ${
    seconds(up.forMs)
  }; php-fpm restarts cannot help`;
}

/**
 * Carries out the policy's upstream action: the evidence, a round of killing the stuck workers
 * when it asks for one and the ladder has kill_stuck (their successors take what waits, and
 * show whether the peer answers again), the incident record, and, when the incident opens, its
 * one alert. Nothing else is restarted.
 */
export async function actOnUpstream(
  ctx: TargetContext,
  prober: Prober,
  teller: Teller,
  result: ProbeResult,
  action: Extract<Action, { type: "upstream" }>,
  policy: Policy,
): Promise<void> {
  const { target, deps, memory, cfg } = ctx;
  const up = result.upstream!;
  const label = labelOf(result);
  const evidence = {
    ...await poolEvidence(ctx, mainPool(target), memory.state.masterPid),
    upstream: up,
  };
  // the kill round is the ladder's kill_stuck rung: a ladder without it kills nothing here either
  const killing = action.kill && target.rungs.includes("kill_stuck");
  const report = killing
    ? await relaunch(
      {
        ...masterIdentity(target),
        pidFile: target.pidFile,
        knownMaster: memory.state.masterPid,
        rungs: ["kill_stuck"],
        stuck: stuckOf(evidence, target.stuckAfterMs),
        ...(target.status === null ? {} : {
          poolHasRoom: async () => {
            const s = await prober.readStatus();
            return typeof s === "string" ? null : s.idle > 0;
          },
        }),
      },
      relaunchContext(ctx),
      async () => verdictOf(await prober.probe()) === "healthy",
    )
    : null;
  const rounds = policy.upstreamKillRounds ?? 1;
  const said = report !== null
    ? `kill round ${action.incident.kills ?? 1} of ${rounds}: ${
      (report.steps.at(-1) ?? "nothing done").replace(/^kill_stuck: /, "")
    }`
    : !target.rungs.includes("kill_stuck")
    ? "nothing killed (the ladder has no kill_stuck rung)"
    : rounds === 0
    ? "nothing killed (upstream_kill_rounds = 0)"
    : "nothing killed yet (a kill round comes only where a pool is seen hung, as without upstreams)";
  await logIncident(ctx, {
    version: 1,
    at: deps.clock.now(),
    host: cfg.hostname,
    target: target.name,
    incident: action.incident.id,
    ...(evidence.status?.pool === undefined ? {} : { poolName: evidence.status.pool }),
    label,
    pool: result.pool?.verdict ?? null,
    why: upstreamLine(up),
    evidence,
    restart: report === null ? null : { ok: report.ok, rung: report.rung, steps: report.steps },
  });
  const held = report?.ok ? "" : "; php-fpm is not restarted until its workers move again";
  const message = `${label} PHP upstream: ${upstreamLine(up)}; ${said}${held}.`;
  const details = [
    ...teller.probeDetails(result),
    `Upstream: ${up.peer}`,
    ...(report === null ? [] : report.steps.map((s) => `  ${s}`)),
    "",
    report === null ? "The pool:" : "Before the kill round:",
    ...(result.pool ? [`Pool judged ${result.pool.verdict}: ${result.pool.why}`] : []),
    ...evidenceLines(evidence),
  ];
  if (action.opened) {
    teller.event("error", message, "PHP upstream blocked", details, {
      incident: action.incident,
      status: "firing",
    });
  } else teller.event("info", message, null, details);
}
