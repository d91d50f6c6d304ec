/**
 * The cron form: one scheduler period of probes (a minute by default, the original's crontab
 * line) with the policy's memory kept on disk between runs; and `--once`, one probe whose
 * verdict is the exit code.
 */
import type { Policy } from "../config/policy_settings.ts";
import type { Config, Target } from "../config/settings.ts";
import { labelOf, type Verdict, verdictOf } from "../probe/result.ts";
import type { Deps } from "../shared/deps.ts";
import { ExitCode } from "../shared/errors.ts";
import { type HeldLock, sayHolder, tryLock, waitForLock } from "../shared/lock.ts";
import { logger } from "../shared/log.ts";
import { publicUrl } from "../shared/redact.ts";
import { MasterExits } from "./master_exits.ts";
import { masterOfStep } from "./master_watch.ts";
import { fitsInRun, nextDue } from "./schedule.ts";
import { PacedSaves } from "./paced_saves.ts";
import { freshMemory, type StateStore } from "./state.ts";
import type { MonitorOptions } from "./context.ts";
import {
  exitFor,
  loadWatch,
  retryAlerts,
  TargetWatch,
  timingOf,
  worstExit,
  writeMetrics,
} from "./target.ts";
import { misconfigurationHint } from "./policy_alerts.ts";
import type { AlertQueue } from "../alert/queue.ts";

/** Takes the target's lock, or says another run has it and returns null. */
async function lockTarget(target: Target, options: MonitorOptions) {
  const lock = await (options.lock ?? tryLock)(target.lockFile);
  if (lock === null) {
    logger.info("Another php-relaunch holds {lock}; this run does nothing.", {
      lock: target.lockFile,
      target: target.name,
    });
  }
  return lock;
}

/** How often a cron run looks whether the run before it has let go of the lock. */
const LOCK_POLL_MS = 500;
/** How far past its period a cron run's last restart may go. */
export const CRON_OVERRUN_MS = 5000;

/**
 * Takes the target's lock for a cron run. Held by watch mode (which never lets go): null at
 * once. Held by another cron or mcron run (one still restarting, past its minute): waits for
 * it, while a probe still fits in this run's period, so that no period goes unwatched.
 */
async function lockForRun(
  target: Target,
  deps: Deps,
  options: MonitorOptions,
  endsAt: number,
): Promise<HeldLock | null> {
  const take = options.lock ?? tryLock;
  const holder = () => take.holder?.(target.lockFile) ?? Promise.resolve(null);
  const fields = { lock: target.lockFile, target: target.name };
  const { lock, gaveUp } = await waitForLock({
    take: () => take(target.lockFile),
    clock: deps.clock,
    pollMs: (now) => Math.min(LOCK_POLL_MS, endsAt - now),
    // a probe must still fit in this run's period
    timeLeft: (now) => now + target.timeoutMs <= endsAt,
    // watch mode (there at first, or started meanwhile) never lets go
    giveUp: async () => {
      if (!(await holder())?.startsWith("watch")) return false;
      logger.info("php-relaunch watch holds {lock}; this run does nothing.", fields);
      return true;
    },
    onWait: () => logger.info("Another run holds {lock}; waiting for it.", fields),
  });
  if (gaveUp) return null;
  if (lock === null) {
    logger.warn(
      "Another run still holds {lock} at the end of this run's period; this run does nothing.",
      fields,
    );
    return null;
  }
  await sayHolder(lock, "cron");
  return lock;
}

/**
 * The cron form: probes every `timeout` seconds for one run period (a minute by default),
 * following the policy, with its memory kept on disk between runs. Stops at once, without
 * restarting, when nginx is unreachable or the heartbeat misconfigured. Several targets (from
 * the configuration file) are watched side by side; a target another run holds is skipped.
 */
export async function watchRun(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  // the watches of this run, whose counters the metrics take without reading them back
  const live = new Map<string, TargetWatch>();
  const run = { startedAt: deps.clock.now(), runMs: cfg.runMs };
  // the alerts earlier runs could not deliver, retried beside the probes: to the end of the
  // period at most, whatever the channels do (the rest waits for the next run)
  const retrying = new AbortController();
  const retryEnd = setTimeout(() => retrying.abort(), run.runMs);
  const retried = retryAlerts(cfg, deps, options, retrying.signal);
  const codes = await Promise.all(cfg.targets.map(async (target) => {
    let alerts: AlertQueue | undefined;
    try {
      using lock = await lockForRun(target, deps, options, run.startedAt + run.runMs);
      if (lock === null) return ExitCode.Ok;
      const { watch, store } = await loadWatch(cfg, target, deps, options);
      alerts = watch.teller.alerts;
      live.set(target.name, watch);
      return await watchTargetRun(target, deps, watch, store, run);
    } finally {
      // after the lock is let go (at the end of the try block): a slow channel never keeps the
      // next run from watching; each delivery has its own deadline, and what it misses is queued
      await alerts?.flush();
    }
  }));
  await retried;
  clearTimeout(retryEnd);
  if (cfg.metricsFile !== null) await writeMetrics(cfg, options, live);
  return worstExit(codes);
}

async function watchTargetRun(
  target: Target,
  deps: Deps,
  watch: TargetWatch,
  store: StateStore,
  run: { startedAt: number; runMs: number },
): Promise<ExitCode> {
  // a restart must not overlap the next run much: it would wait for this one
  const endsAt = run.startedAt + run.runMs;
  watch.ctx.cronRun = { endsAt, deadline: endsAt + CRON_OVERRUN_MS };
  const timing = timingOf(target.policy);
  // the first probe is due at the run's start (on its grid of probes), or now after waiting for
  // the lock (which took at least one poll)
  const waited = deps.clock.now() - run.startedAt >= LOCK_POLL_MS;
  let dueAt = waited ? deps.clock.now() : run.startedAt;
  let last: { verdict: Verdict; restartOk: boolean } = { verdict: "healthy", restartOk: false };
  // watch mode's exit watch, for the length of the run: its watcher ends with it
  using exits = new MasterExits(deps, target);
  const saves = new PacedSaves(store, deps.clock);
  try {
    while (true) {
      const step = await watch.step(target.policy);
      if (step === null) break;
      await saves.save(watch.memory);
      last = step;
      if (step.verdict === "unreachable" || step.verdict === "misconfigured") break;
      dueAt = nextDue({ dueAt, now: deps.clock.now(), ...step }, timing);
      if (!fitsInRun(dueAt, run, target.timeoutMs)) break;
      if (await exits.sleep(watch.memory.state.masterPid, dueAt - deps.clock.now())) {
        dueAt = deps.clock.now();
        watch.ctx.masterExited = true;
      }
    }
  } finally {
    // the run's counting, for the next run and the metrics file
    await saves.flush();
  }
  return exitFor(last);
}

/**
 * `--once`: one probe of each target whose verdict is the exit code, no restart, no mail, no
 * change to the memory that cron runs share. With `--restart` a failure is acted on at once (the
 * caller has decided), under the target's lock and through the same memory, so flap protection
 * still holds.
 */
export async function probeOnce(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  const codes: ExitCode[] = [];
  for (const target of cfg.targets) {
    if (!cfg.restartOnOnce) {
      codes.push(await checkTarget(cfg, target, deps));
      continue;
    }
    using lock = await lockTarget(target, options);
    if (lock !== null) codes.push(await restartTargetOnce(cfg, target, deps, options));
  }
  return worstExit(codes);
}

async function checkTarget(cfg: Config, target: Target, deps: Deps): Promise<ExitCode> {
  const watch = new TargetWatch(cfg, target, deps, {}, freshMemory());
  const result = await watch.prober.probe();
  const verdict = verdictOf(result);
  const label = labelOf(result);
  deps.stdout(`${label} ${verdict} in ${result.ms} ms: ${publicUrl(target.url)}\n`);
  if (verdict === "php_down") {
    logger.warn("{label} PHP down, not restarted (--once without --restart).", {
      label,
      target: target.name,
    });
  } else if (verdict !== "healthy") {
    logger.error("{label} PHP not restarted: heartbeat {url} {why}", {
      label,
      url: publicUrl(target.url),
      why: verdict === "unreachable"
        ? "unreachable; nginx or the address is down."
        : misconfigurationHint(result),
      target: target.name,
    });
  }
  return exitFor({ verdict, restartOk: false });
}

async function restartTargetOnce(
  cfg: Config,
  target: Target,
  deps: Deps,
  options: MonitorOptions,
): Promise<ExitCode> {
  const { watch, store } = await loadWatch(cfg, target, deps, options);
  const policy: Policy = { ...target.policy, failureThreshold: 1, timeoutThreshold: 1 };
  try {
    const result = await watch.prober.probe();
    const verdict = verdictOf(result);
    deps.stdout(`${labelOf(result)} ${verdict} in ${result.ms} ms: ${publicUrl(target.url)}\n`);
    if (await watch.paused(verdict, labelOf(result))) {
      deps.stdout(`${target.name} is paused: not restarted\n`);
      return exitFor({ verdict, restartOk: false });
    }
    const master = await masterOfStep(watch.ctx, verdictOf(result) !== "healthy");
    const { restartOk } = await watch.carryOut(result, policy, master.live);
    await store.save(watch.memory);
    return exitFor({ verdict, restartOk });
  } finally {
    await watch.teller.alerts.flush();
  }
}
