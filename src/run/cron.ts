/**
 * The cron form: one scheduler period of probes (a minute by default, the original's crontab
 * line) with the policy's memory kept on disk between runs; and `--once`, one probe whose
 * verdict is the exit code.
 */
import { readPidFile } from "../act/restart.ts";
import type { Policy } from "../config/policy.ts";
import type { Config, Target } from "../config/settings.ts";
import { labelOf, type Verdict, verdictOf } from "../probe/result.ts";
import type { Deps } from "../shared/deps.ts";
import { ExitCode } from "../shared/errors.ts";
import { tryLock } from "../shared/lock.ts";
import { logger } from "../shared/log.ts";
import { publicUrl } from "../shared/redact.ts";
import { fitsInRun, nextDue } from "./schedule.ts";
import { freshMemory } from "./state.ts";
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
import { misconfigurationHint } from "./teller.ts";

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
  await retryAlerts(cfg, deps, options);
  // the watches of this run, whose counters the metrics take without reading them back
  const live = new Map<string, TargetWatch>();
  const codes = await Promise.all(cfg.targets.map(async (target) => {
    using lock = await lockTarget(target, options);
    return lock === null ? ExitCode.Ok : await watchTargetRun(cfg, target, deps, options, live);
  }));
  if (cfg.metricsFile !== null) await writeMetrics(cfg, options, live);
  return worstExit(codes);
}

async function watchTargetRun(
  cfg: Config,
  target: Target,
  deps: Deps,
  options: MonitorOptions,
  live: Map<string, TargetWatch>,
): Promise<ExitCode> {
  const { watch, store } = await loadWatch(cfg, target, deps, options);
  live.set(target.name, watch);
  const run = { startedAt: deps.clock.now(), runMs: cfg.runMs };
  const timing = timingOf(target.policy);
  let dueAt = run.startedAt;
  let last: { verdict: Verdict; restartOk: boolean } = { verdict: "healthy", restartOk: false };
  try {
    while (true) {
      const step = await watch.step(target.policy);
      if (step === null) break;
      await store.save(watch.memory);
      last = step;
      if (step.verdict === "unreachable" || step.verdict === "misconfigured") break;
      dueAt = nextDue({ dueAt, now: deps.clock.now(), ...step }, timing);
      if (!fitsInRun(dueAt, run, target.timeoutMs)) break;
      await deps.clock.sleep(dueAt - deps.clock.now());
    }
  } finally {
    await watch.teller.alerts.flush();
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
    const master = await readPidFile(deps.fs, target.pidFile);
    const { restartOk } = await watch.carryOut(result, policy, master);
    await store.save(watch.memory);
    return exitFor({ verdict, restartOk });
  } finally {
    await watch.teller.alerts.flush();
  }
}
