/**
 * Freeing a pool that fails while another pool of its service answers: its stuck workers killed
 * (the kill_stuck rung, for this pool alone), never the service restarted, which would interrupt
 * the pools that serve; the incident recorded and told.
 */
import { relaunch } from "../act/restart.ts";
import type { Policy } from "../config/policy_settings.ts";
import type { PoolProbe } from "../config/settings.ts";
import { evidenceLines } from "../fpm/evidence.ts";
import { assessPool, type PoolStatus } from "../fpm/status_page.ts";
import { labelOf, type ProbeResult, verdictOf } from "../probe/result.ts";
import { logIncident, type TargetContext } from "./context.ts";
import { masterIdentity } from "./master_watch.ts";
import type { Prober } from "./prober.ts";
import { poolEvidence, relaunchContext, stuckOf } from "./responder.ts";
import type { Teller } from "./teller.ts";

/** What freeing a pool works with: the target's context, eyes and voice (its PoolKeeper's). */
interface Keeper {
  readonly ctx: TargetContext;
  readonly prober: Prober;
  readonly teller: Teller;
}

/**
 * Kills the pool's stuck workers (the kill_stuck rung, for this pool), unless its status page
 * shows it overloaded but moving and on_overload says alert; records the incident and tells it.
 * True when the pool answers again; null when nothing was tried (overloaded, told once a run
 * of failures).
 */
export async function freePool(
  keeper: Keeper,
  p: { pool: PoolProbe; result: ProbeResult },
  policy: Policy,
  serving: string[],
  toldOverloaded: boolean,
): Promise<boolean | null> {
  const { ctx, prober, teller } = keeper;
  const { target, deps } = ctx;
  const name = p.pool.name;
  const label = labelOf(p.result);
  const judged = await assess(keeper, p.pool, policy);
  if (judged?.verdict === "busy" && policy.onOverload === "alert") {
    // said once a run of failures: it is judged again at each threshold, and killed when hung
    if (toldOverloaded) return null;
    teller.event(
      "warn",
      `${label} PHP pool ${name} overloaded, its workers not killed: ${judged.why}; pool ${
        serving.join(", ")
      } serves.`,
      "PHP pool overloaded",
      [
        ...teller.probeDetails(p.result, p.pool.url),
        'Set on_overload = "restart" to kill its stuck workers anyway.',
      ],
      null,
    );
    return null;
  }
  const evidence = await poolEvidence(ctx, p.pool, ctx.memory.state.masterPid);
  const report = await relaunch(
    {
      ...masterIdentity(target),
      pidFile: target.pidFile,
      knownMaster: ctx.memory.state.masterPid,
      rungs: ["kill_stuck"],
      stuck: stuckOf(evidence, p.pool.stuckAfterMs),
      ...(p.pool.status === null ? {} : {
        poolHasRoom: async () => {
          const s = await prober.readStatus(p.pool.status!);
          return typeof s === "string" ? null : s.idle > 0;
        },
      }),
    },
    relaunchContext(ctx),
    async () => verdictOf(await prober.probePool(p.pool)) === "healthy",
  );
  await logIncident(ctx, {
    version: 1,
    at: deps.clock.now(),
    host: ctx.cfg.hostname,
    target: target.name,
    poolName: evidence.status?.pool ?? name,
    label,
    pool: judged?.verdict ?? null,
    why: judged?.why ?? p.result.detail,
    evidence,
    restart: { ok: report.ok, rung: report.rung, steps: report.steps },
  });
  const details = [
    ...teller.probeDetails(p.result, p.pool.url),
    ...report.steps.map((step) => `  ${step}`),
    `Pools answering meanwhile: ${serving.join(", ")}`,
    "",
    "Before the kill:",
    ...(judged === null ? [] : [`Pool judged ${judged.verdict}: ${judged.why}`]),
    ...evidenceLines(evidence),
  ];
  const kept = `${target.fpm.service} was not restarted: pool ${serving.join(", ")} serves`;
  if (report.ok) {
    teller.event(
      "info",
      `${label} PHP pool ${name} freed: ${
        report.steps.at(-1)?.replace(/^kill_stuck: /, "")
      }; ${kept}.`,
      "PHP pool workers killed",
      details,
      null,
    );
  } else {
    teller.event(
      "error",
      `${label} PHP pool ${name} still failing (${report.reason}); ${kept}${
        p.pool.status === null ? " (set its status_url to find its stuck workers)" : ""
      }.`,
      "PHP pool failing",
      details,
      null,
    );
  }
  return report.ok;
}

/** Two reads of the pool's status page about a second apart: busy or hung; null: none. */
async function assess(
  { ctx, prober }: Keeper,
  pool: PoolProbe,
  policy: Policy,
): Promise<{ verdict: "busy" | "hung"; why: string } | null> {
  if (pool.status === null) return null;
  const first = await prober.readStatus(pool.status);
  let second: PoolStatus | string = first;
  if (typeof first !== "string") {
    await ctx.deps.clock.sleep(Math.max(policy.confirmDelayMs, 500));
    second = await prober.readStatus(pool.status);
  }
  return assessPool(first, second, pool.statusOnPool ? 1 : 0);
}
