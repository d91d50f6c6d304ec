/**
 * act/ owns changing the world: the restart ladder, the init system's and the process tools
 * (service, systemctl, pgrep, pkill, ps, kill), each run from an argument array with a timeout.
 * It may import only probe/ and shared/.
 *
 * This module: relaunching php-fpm, as a ladder that stops at the first rung that brings the
 * heartbeat back: `reload` (SIGUSR2 to the master: graceful), `restart` (through the init system,
 * with a stop timeout), `kill` (SIGKILL of this service's processes, then start: the original's
 * way, because hung or stopped workers can block a polite stop). Only the target's own pool is
 * touched: its master's process group when the pid file names it, else its processes by exact name.
 */
import type { Clock, Fs, ProcessRunner, RunResult } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { type InitSystem, serviceCommands, type ServiceTarget, type Tools } from "./service.ts";

/** The restart ladder's rungs, gentlest first. */
export const RUNGS = ["kill_stuck", "reload", "restart", "kill"] as const;
/** One rung of the ladder. */
export type Rung = typeof RUNGS[number];

/** Limits of one relaunch. */
export interface RelaunchOptions {
  /** Start attempts of the kill rung before giving up (the original's MAX_LAUNCH_ATTEMPTS). */
  maxAttempts: number;
  /** Pause between attempts. */
  retryDelayMs: number;
  /** Rounds of pkill/pgrep before giving up on processes that will not die (state D). */
  killRounds: number;
  /** Pause between kill rounds. */
  killPollMs: number;
  /** Limit for one `service ... start|restart` / `systemctl ...`. */
  startTimeoutMs: number;
  /** Limit for one pgrep/pkill. */
  toolTimeoutMs: number;
  /** Re-probing a gentle rung's result this often, until `startTimeoutMs`. */
  verifyEveryMs: number;
  /**
   * After the first, no rung or start attempt begins that could not end by then (a cron run's
   * period, plus a little): the next run goes on with it, instead of overlapping this one.
   */
  deadline?: number;
}

/** Whether one more command, of up to `startTimeoutMs`, would end after the deadline. */
function outOfTime(ctx: RelaunchContext, opts: RelaunchOptions): boolean {
  return opts.deadline !== undefined && ctx.clock.now() + opts.startTimeoutMs > opts.deadline;
}

const OUT_OF_TIME = "no time left in this run for another attempt (the next run goes on)";

/** The original's 10 attempts, about 2 s apart. */
export const DEFAULT_RELAUNCH: RelaunchOptions = {
  maxAttempts: 10,
  retryDelayMs: 2000,
  killRounds: 10,
  killPollMs: 200,
  startTimeoutMs: 30_000,
  toolTimeoutMs: 5_000,
  verifyEveryMs: 500,
};

/** How long the kill_stuck rung waits for the heartbeat before the next rung. */
const STUCK_VERIFY_MS = 3000;
/** How long the master has to fork the killed workers' successors before the pool is read. */
const STUCK_SETTLE_MS = 1000;

/** What a relaunch did. */
export interface RelaunchReport {
  ok: boolean;
  service: string;
  /** The rung that brought it back, or the last one tried. */
  rung: Rung | null;
  /** What each rung tried did, in order. */
  steps: string[];
  /** Start attempts made by the kill rung. */
  attempts: number;
  /** Processes of the service that were running when the kill rung started. */
  killed: number;
  /** Why it failed, when it did. */
  reason: string;
}

/** What the relaunch needs to know and touch. */
export interface RelaunchContext {
  init: InitSystem;
  tools: Tools;
  runner: ProcessRunner;
  clock: Clock;
  fs: Fs;
  options?: RelaunchOptions;
}

/** The pool to relaunch: the service, its processes' name, its pid file, the rungs to climb. */
export interface RelaunchTarget extends ServiceTarget {
  pidFile: string | null;
  rungs: readonly Rung[];
  /** Workers the status page shows stuck on one request: the kill_stuck rung's targets. */
  stuck?: readonly number[];
  /**
   * Whether the pool has an idle worker, from the status page (null: cannot tell). After
   * kill_stuck, "no" means queued requests took the new workers at once: the next rung acts
   * within a second instead of after a heartbeat timeout.
   */
  poolHasRoom?: () => Promise<boolean | null>;
}

function summary(cmd: string, args: readonly string[], r: RunResult): string {
  const how = r.timedOut ? "timed out" : r.signal ? `killed by ${r.signal}` : `exited ${r.code}`;
  const said = (r.stderr || r.stdout).split("\n")[0] ?? "";
  return `${[cmd, ...args].join(" ")} ${how}${said ? `: ${said}` : ""}`;
}

/** The pid a pid file names, or null (no file, not a number). */
export async function readPidFile(fs: Fs, path: string | null): Promise<number | null> {
  if (path === null) return null;
  try {
    const pid = Number((await fs.readTextFile(path)).trim());
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

function masterPid(ctx: RelaunchContext, target: RelaunchTarget): Promise<number | null> {
  return readPidFile(ctx.fs, target.pidFile);
}

/**
 * The state letter (R, S, D, T, Z...) of each of `pids` that exists, from ps: Deno's permission
 * model keeps /proc/<pid> for --allow-all, and ps reads the same on Linux and FreeBSD.
 */
async function processStates(
  ctx: RelaunchContext,
  pids: readonly number[],
  opts: RelaunchOptions,
): Promise<Map<number, string>> {
  const states = new Map<number, string>();
  if (pids.length === 0) return states;
  const args = ["-o", "pid=,stat=", "-p", pids.join(",")];
  const r = await ctx.runner.run(ctx.tools.ps, args, { timeoutMs: opts.toolTimeoutMs });
  for (const line of r.stdout.split("\n")) {
    const [pid, stat] = line.trim().split(/\s+/);
    if (pid && stat) states.set(Number(pid), stat.charAt(0));
  }
  return states;
}

/** A process's state letter, or null when it is gone. */
async function processState(
  ctx: RelaunchContext,
  pid: number,
  opts: RelaunchOptions,
): Promise<string | null> {
  return (await processStates(ctx, [pid], opts)).get(pid) ?? null;
}

/**
 * pgrep/pkill arguments that select the pool: the master's process group (php-fpm's daemon
 * calls setsid, and workers keep the group even after the master died) and the exact name, so a
 * stale pid file cannot select anything else; by name alone without a pid file.
 */
function poolSelector(name: string, pid: number | null): string[] {
  return pid === null ? ["-x", name] : ["-g", String(pid), "-x", name];
}

/**
 * Counts the pool's live processes (pgrep exits 1 when there are none). Zombies do not count: a
 * killed master whose parent has not reaped it yet is gone for every purpose.
 */
async function countProcesses(ctx: RelaunchContext, selector: string[], opts: RelaunchOptions) {
  const r = await ctx.runner.run(ctx.tools.pgrep, selector, { timeoutMs: opts.toolTimeoutMs });
  if (r.code !== 0 && r.code !== 1) throw new Error(summary(ctx.tools.pgrep, selector, r));
  if (r.code === 1) return 0;
  const pids = r.stdout.split("\n").map(Number).filter((n) => n > 0);
  const states = await processStates(ctx, pids, opts);
  return [...states.values()].filter((state) => state !== "Z").length;
}

async function killAll(
  ctx: RelaunchContext,
  selector: string[],
  opts: RelaunchOptions,
): Promise<{ killed: number; survivors: number }> {
  const killed = await countProcesses(ctx, selector, opts);
  let survivors = killed;
  for (let round = 0; round < opts.killRounds && survivors > 0; round++) {
    const args = ["-KILL", ...selector];
    const r = await ctx.runner.run(ctx.tools.pkill, args, { timeoutMs: opts.toolTimeoutMs });
    if (r.code > 1) throw new Error(summary(ctx.tools.pkill, args, r));
    await ctx.clock.sleep(opts.killPollMs);
    survivors = await countProcesses(ctx, selector, opts);
  }
  return { killed, survivors };
}

/** Re-probes until healthy or `limitMs` (by default `startTimeoutMs`) has passed. */
async function healthyWithin(
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
  limitMs = opts.startTimeoutMs,
): Promise<boolean> {
  const until = ctx.clock.now() + limitMs;
  while (true) {
    if (await verify()) return true;
    if (ctx.clock.now() + opts.verifyEveryMs > until) return false;
    await ctx.clock.sleep(opts.verifyEveryMs);
  }
}

type RungResult = { ok: boolean; step: string; attempts?: number; killed?: number };

/**
 * SIGKILL to the workers stuck on one request, nothing else: the master starts new ones at once
 * and every other request goes on. Each pid is checked with ps first (still a process of this
 * pool's master and name), so a pid reused since the status page was read is never hit.
 */
async function killStuckRung(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
): Promise<RungResult | null> {
  const pid = await masterPid(ctx, target);
  const stuck = target.stuck ?? [];
  if (pid === null || stuck.length === 0) return null;
  const args = ["-o", "pid=,pgid=,comm=", "-p", stuck.join(",")];
  const r = await ctx.runner.run(ctx.tools.ps, args, { timeoutMs: opts.toolTimeoutMs });
  const ours = r.stdout.split("\n").map((line) => line.trim().split(/\s+/)).filter((f) =>
    f.length === 3 && Number(f[1]) === pid && f[2] === target.processName && Number(f[0]) !== pid
  ).map((f) => f[0]!);
  if (ours.length === 0) return null;
  const killArgs = ["-KILL", ...ours];
  const k = await ctx.runner.run(ctx.tools.kill, killArgs, { timeoutMs: opts.toolTimeoutMs });
  if (k.code !== 0) return { ok: false, step: summary(ctx.tools.kill, killArgs, k) };
  const step = `SIGKILL to stuck workers ${ours.join(", ")}`;
  // new workers are forked at once: if the heartbeat is not back soon, the next rung must act
  if (target.poolHasRoom) {
    await ctx.clock.sleep(STUCK_SETTLE_MS);
    if ((await target.poolHasRoom()) === false) {
      return {
        ok: false,
        step: `${step}; queued requests took every new worker`,
        killed: ours.length,
      };
    }
  }
  return {
    ok: await healthyWithin(ctx, verify, opts, Math.min(opts.startTimeoutMs, STUCK_VERIFY_MS)),
    step,
    killed: ours.length,
  };
}

/** SIGUSR2 to the master: php-fpm reloads its configuration and replaces its workers. */
async function reloadRung(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
): Promise<RungResult | null> {
  const pid = await masterPid(ctx, target);
  const state = pid === null ? null : await processState(ctx, pid, opts);
  // a dead or stopped (SIGSTOP) master cannot act on a signal: no use waiting for it
  if (pid === null || state === null || state === "T" || state === "Z") return null;
  const args = ["-USR2", "-g", String(pid), "-o", "-x", target.processName];
  const r = await ctx.runner.run(ctx.tools.pkill, args, { timeoutMs: opts.toolTimeoutMs });
  if (r.code !== 0) return { ok: false, step: summary(ctx.tools.pkill, args, r) };
  return { ok: await healthyWithin(ctx, verify, opts), step: `SIGUSR2 to master ${pid}` };
}

/** `restart` through the init system, its stop bounded by `startTimeoutMs`. */
async function restartRung(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
): Promise<RungResult | null> {
  const pid = await masterPid(ctx, target);
  // a stopped master would hold the init script's stop until its timeout
  if (pid !== null && (await processState(ctx, pid, opts)) === "T") return null;
  let last = "";
  for (const [cmd, args] of serviceCommands(ctx.init, ctx.tools, target.service).restart) {
    const r = await ctx.runner.run(cmd, args, { timeoutMs: opts.startTimeoutMs });
    last = summary(cmd, args, r);
  }
  return { ok: await healthyWithin(ctx, verify, opts), step: last };
}

/** SIGKILL the pool, then start it, up to `maxAttempts` times, each verified. */
async function killRung(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
): Promise<RungResult> {
  const selector = poolSelector(target.processName, await masterPid(ctx, target));
  const { killed, survivors } = await killAll(ctx, selector, opts);
  if (survivors > 0) {
    logger.warn("{survivors} {name} processes survived SIGKILL; starting anyway.", {
      survivors,
      name: target.processName,
    });
  }
  const byName = ["-x", target.processName];
  let step = "";
  for (let attempt = 1; attempt <= opts.maxAttempts; attempt++) {
    for (const [cmd, args] of serviceCommands(ctx.init, ctx.tools, target.service).start) {
      const r = await ctx.runner.run(cmd, args, { timeoutMs: opts.startTimeoutMs });
      step = summary(cmd, args, r);
      logger.debug("Attempt {attempt}: {result}", { attempt, result: step });
    }
    // the new master has a new pid: look for the service's processes by name
    const running = await countProcesses(ctx, byName, opts);
    if (running > 0 && await verify()) return { ok: true, step, attempts: attempt, killed };
    step = running === 0
      ? `no ${target.processName} process after ${step}`
      : `${target.processName} runs but the heartbeat is still failing`;
    if (attempt < opts.maxAttempts) await ctx.clock.sleep(opts.retryDelayMs);
    else return { ok: false, step, attempts: attempt, killed };
    if (outOfTime(ctx, opts)) {
      return { ok: false, step: `${step}; ${OUT_OF_TIME}`, attempts: attempt, killed };
    }
  }
  return { ok: false, step, attempts: 0, killed };
}

const RUNG: Record<
  Rung,
  (
    t: RelaunchTarget,
    c: RelaunchContext,
    v: () => Promise<boolean>,
    o: RelaunchOptions,
  ) => Promise<RungResult | null>
> = { "kill_stuck": killStuckRung, reload: reloadRung, restart: restartRung, kill: killRung };

/**
 * Climbs `target.rungs` until the heartbeat (`verify`, a fresh probe) is healthy. Never throws:
 * failures, including commands that cannot be run, are in the report.
 */
export async function relaunch(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
): Promise<RelaunchReport> {
  const opts = ctx.options ?? DEFAULT_RELAUNCH;
  const report: RelaunchReport = {
    ok: false,
    service: target.service,
    rung: null,
    steps: [],
    attempts: 0,
    killed: 0,
    reason: "",
  };
  try {
    for (const rung of target.rungs) {
      if (report.rung !== null && outOfTime(ctx, opts)) {
        report.steps.push(`${rung}: not begun: ${OUT_OF_TIME}`);
        break;
      }
      const result = await RUNG[rung](target, ctx, verify, opts);
      if (result === null) {
        const why = rung === "kill_stuck" ? "no stuck worker known" : "master gone or stopped";
        report.steps.push(`${rung}: skipped (${why})`);
        logger.debug("Rung {rung} skipped: {why}.", { rung, why });
        continue;
      }
      logger.debug("Rung {rung}: {step}{verdict}", {
        rung,
        step: result.step,
        verdict: result.ok ? "" : " (still failing)",
      });
      report.rung = rung;
      report.steps.push(`${rung}: ${result.step}${result.ok ? "" : " (still failing)"}`);
      report.attempts += result.attempts ?? 0;
      report.killed += result.killed ?? 0;
      if (result.ok) {
        report.ok = true;
        report.reason = "";
        return report;
      }
      report.reason = result.step;
    }
    if (report.rung === null) report.reason = "every rung was skipped";
  } catch (err) {
    // a command that cannot be run (missing, not allowed) will not work on the next rung either
    report.reason = describeError(err);
  }
  return report;
}
