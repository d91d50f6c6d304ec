/**
 * The target's php-fpm master at each step. When a probe fails it is always looked for in the
 * process table (see act/master.ts): what is done next depends on it. While every probe answers,
 * the pid file is read as a hint (every {@link PID_HINT_MS}), and the table only when the hint
 * disagrees with the master last seen, at most every {@link HEALTHY_LOOK_MS}: a pid file that
 * www-data flips or removes costs a `ps` now and then, and decides nothing. A master whose exit
 * was seen is looked for at the next step, whatever the probe says.
 */
import { locateMaster, type MasterIdentity, type MasterView, readPidFile } from "../act/master.ts";
import type { Target } from "../config/settings.ts";
import type { TargetContext } from "./context.ts";
import { logger } from "../shared/log.ts";

/** How often a healthy target's master is looked for when the pid file names another. */
export const HEALTHY_LOOK_MS = 30_000;
/** How often the pid file is read while every probe answers (see {@link masterOfStep}). */
export const PID_HINT_MS = 5000;

/** What identifies a target's php-fpm master. */
export function masterIdentity(target: Target): MasterIdentity {
  return {
    service: target.fpm.service,
    processName: target.fpm.processName,
    fpmConfig: target.fpmConfig,
  };
}

/**
 * The master now: looked for in the process table, with the last one seen as the tie-breaker.
 * Two root masters of one configuration are not normal (a start that could not see the first):
 * said once, as a warning.
 */
export async function lookForMaster(ctx: TargetContext): Promise<MasterView> {
  const { cfg, deps, target, memory } = ctx;
  const view = await locateMaster(
    { runner: deps.runner, tools: cfg.tools, init: cfg.init },
    masterIdentity(target),
    memory.state.masterPid,
  );
  if (view.candidates > 1 && target.fpmConfig !== null && !ctx.toldMasters) {
    ctx.toldMasters = true;
    logger.warn(
      "{n} root masters of {config} run: php-relaunch acts on {live} (the one it last saw); stop the other(s).",
      {
        n: view.candidates,
        config: target.fpmConfig,
        live: view.live ?? "none of them",
        target: target.name,
      },
    );
  }
  return view;
}

/**
 * The master for this step. `failing`: a probe failed, and the process table is read. Otherwise
 * the master last seen stands (`rows` null: not looked at) unless the pid file names another and
 * the table was not read for {@link HEALTHY_LOOK_MS}.
 */
export async function masterOfStep(ctx: TargetContext, failing: boolean): Promise<MasterView> {
  const { deps, target, memory } = ctx;
  const known = memory.state.masterPid;
  const now = deps.clock.now();
  // the master last seen exited: whatever answers now is another's
  const exited = ctx.masterExited === true;
  ctx.masterExited = false;
  if (!failing && !exited) {
    const seen: MasterView = {
      live: known,
      candidates: known === null ? 0 : 1,
      rows: null,
      mainPid: null,
    };
    if (ctx.masterLookedAt !== undefined && now - ctx.masterLookedAt < HEALTHY_LOOK_MS) return seen;
    // a master that changes exits first, and its exit is watched: the hint is read now and then
    if (ctx.pidFileReadAt !== undefined && now - ctx.pidFileReadAt < PID_HINT_MS) return seen;
    ctx.pidFileReadAt = now;
    if (known !== null && (await readPidFile(deps.fs, target.pidFile)) === known) return seen;
  }
  ctx.masterLookedAt = now;
  return await lookForMaster(ctx);
}
