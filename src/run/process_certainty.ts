/**
 * What the process table makes certain of a php-fpm failure: its master gone (a crash, whatever
 * a status page its leftover workers answer says), every process stopped (a hang), or the idle
 * workers of a pool judged busy stopped (hung). A certain failure is acted on at once.
 */
import { type Certainty, certainty, idleAllStopped } from "../act/process_table.ts";
import type { MasterView } from "../act/master.ts";
import { type ProbeResult, verdictOf } from "../probe/result.ts";
import { logger } from "../shared/log.ts";
import type { TargetContext } from "./context.ts";
import { lookForMaster, masterIdentity } from "./master_watch.ts";

/**
 * Adds what the process table says to a php-fpm failure that counts: a master gone after a 5xx
 * or a refused socket, every process stopped after a timeout. Certain, it is acted on at once.
 * `master`: this step's (read from the table when it was not).
 */
export async function withProcessTable(
  ctx: TargetContext,
  result: ProbeResult,
  master: MasterView,
): Promise<ProbeResult> {
  const { target, deps, memory } = ctx;
  if (verdictOf(result) !== "php_down") return result;
  if (deps.clock.now() < memory.state.graceUntil || memory.state.givenUpAt !== null) {
    return result;
  }
  const view = master.rows === null ? await lookForMaster(ctx) : master;
  const id = masterIdentity(target);
  // a master gone is a crash whatever a status page says: its leftover workers may answer it
  const crash = certainty(view, id, memory.state.masterPid, "crash");
  if (crash !== null) return certainly(ctx, result, crash);
  if (result.pool?.verdict === "busy") return idleInTable(ctx, result, view);
  if (result.pool !== undefined) return result;
  const slow = result.kind === "timeout" || result.kind === "overloaded";
  const hang = slow ? certainty(view, id, memory.state.masterPid, "hang") : null;
  return hang === null ? result : certainly(ctx, result, hang);
}

function certainly(ctx: TargetContext, result: ProbeResult, certain: Certainty): ProbeResult {
  logger.debug("{label} is certain: {why}.", {
    label: result.kind === "status" ? String(result.status) : result.kind,
    why: certain.why,
    target: ctx.target.name,
  });
  return { ...result, certain };
}

/**
 * A pool judged busy for its idle workers, checked against the process table: workers that are
 * stopped take no request though the status page shows them idle, and the pool is hung.
 */
function idleInTable(ctx: TargetContext, result: ProbeResult, view: MasterView): ProbeResult {
  const s = ctx.lastStatus?.status;
  if (s === undefined || typeof s === "string" || s.idle === 0) return result;
  const idle = s.workers.filter((w) => w.state === "Idle").map((w) => w.pid);
  if (idleAllStopped(view, masterIdentity(ctx.target), idle) !== true) return result;
  return {
    ...result,
    pool: {
      verdict: "hung",
      why:
        `the ${idle.length} workers the status page shows idle are stopped (state T): the pool takes no request`,
    },
  };
}
