/**
 * act/ owns changing the world: the restart ladder, the init system's and the process tools
 * (service, systemctl, pgrep, pkill, ps, kill), each run from an argument array with a timeout.
 * It may import only probe/ and shared/.
 *
 * This module: relaunching php-fpm, as a ladder that stops at the first rung that brings the
 * heartbeat back: `reload` (SIGUSR2 to the master: graceful), `restart` (through the init system,
 * with a stop timeout), `kill` (SIGKILL of this service's processes, then start: the original's
 * way, because hung or stopped workers can block a polite stop). Only the target's own pool is
 * touched: its master (found from root's facts, see master.ts) and that master's process group and
 * children, each signalled by pid; never every process of a name.
 */
import type { Clock, Fs, ProcessRunner, RunResult } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { clip } from "../shared/redact.ts";
import { logger } from "../shared/log.ts";
import {
  isMaster,
  locateMaster,
  type MasterIdentity,
  type MasterView,
  mayBeMaster,
  poolOf,
  readPidFile,
} from "./master.ts";
import { clearPidFile, trustsPidFile } from "./pid_file.ts";
import { type Proc, readProcesses, type TitlesOf } from "./processes.ts";
import { fpmBinary, type InitSystem, serviceCommands, type Tools } from "./service.ts";

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
  /**
   * The pid file, removed before an init script's start and read after it (see pid_file.ts),
   * and php-fpm's binary, found for a start the init script turns away.
   */
  fs: Pick<Fs, "removeName" | "readUntrusted" | "isExecutable">;
  options?: RelaunchOptions;
}

/** A worker the status page showed stuck on one request: the kill_stuck rung's target. */
export interface StuckWorker {
  pid: number;
  /** The pool it serves, as its title must say (`php-fpm: pool www`). */
  pool: string;
  /** When it started, as the status page says (ms; 0: not said): a reused pid started later. */
  startedAt: number;
}

/** The pool to relaunch: the service and its master, the rungs to climb. */
export interface RelaunchTarget extends MasterIdentity {
  rungs: readonly Rung[];
  /** php-fpm's pid file, which the init scripts go by (null: none known). */
  pidFile: string | null;
  /**
   * The master last seen (found by {@link locateMaster}, never read from the pid file): whose
   * pool the kill rung ends when no master runs any more.
   */
  knownMaster: number | null;
  /** Workers the status page shows stuck on one request: the kill_stuck rung's targets. */
  stuck?: readonly StuckWorker[];
  /**
   * Whether the pool has an idle worker, from the status page (null: cannot tell). After
   * kill_stuck, "no" means queued requests took the new workers at once: the next rung acts
   * within a second instead of after a heartbeat timeout.
   */
  poolHasRoom?: () => Promise<boolean | null>;
  /**
   * php-cgi, which has no master: its processes are selected by their name, as the original
   * did. php-fpm's never are.
   */
  byName?: boolean;
}

/** The most of a command's words kept in a step. */
const MAX_SAID = 300;

function summary(cmd: string, args: readonly string[], r: RunResult): string {
  const how = r.timedOut ? "timed out" : r.signal ? `killed by ${r.signal}` : `exited ${r.code}`;
  // a line of what the command said: the log line, the alert and the state keep it
  const said = clip((r.stderr || r.stdout).split("\n")[0] ?? "", MAX_SAID);
  return `${[cmd, ...args].join(" ")} ${how}${said ? `: ${said}` : ""}`;
}

/** The service's processes and its master, as they are now; workers' titles with `"all"`. */
function look(
  ctx: RelaunchContext,
  target: RelaunchTarget,
  titlesOf: TitlesOf = "masters",
): Promise<MasterView> {
  return locateMaster(ctx, target, target.knownMaster, titlesOf);
}

/** Why a rung that would start php-fpm does not. */
const UNREADABLE = "the process table cannot be read (ps did not answer in time)";

/** How far a stuck worker's start may be from the status page's: ps and php-fpm round. */
const START_SLACK_S = 3;

/**
 * The processes the kill rung ends: php-fpm's pool (its master's group and children, the live
 * master's or else the last one seen), or php-cgi's by name. Null when the table cannot be read.
 */
function victimsOf(view: MasterView, target: RelaunchTarget): Proc[] | null {
  if (view.rows === null) return null;
  if (target.byName) return view.rows.filter((p) => p.state !== "Z");
  const master = view.live ?? target.knownMaster;
  return master === null ? [] : poolOf(view.rows, target, master, view.mainPid);
}

/** SIGKILL to `victims` by pid, in rounds, until none is left or the rounds run out. */
async function killAll(
  ctx: RelaunchContext,
  target: RelaunchTarget,
  victims: readonly Proc[],
  opts: RelaunchOptions,
): Promise<{ killed: number; survivors: readonly Proc[] }> {
  let left: readonly Proc[] = victims;
  for (let round = 0; round < opts.killRounds && left.length > 0; round++) {
    const args = ["-KILL", ...left.map((p) => String(p.pid))];
    const r = await ctx.runner.run(ctx.tools.kill, args, { timeoutMs: opts.toolTimeoutMs });
    // 1: some were gone already
    if (r.code > 1) throw new Error(summary(ctx.tools.kill, args, r));
    await ctx.clock.sleep(opts.killPollMs);
    const alive = await stillAlive(ctx, target, left, opts);
    if (alive === null) break;
    left = alive;
  }
  return { killed: victims.length, survivors: left };
}

/**
 * Which of `procs` are still alive, from a new look at the table (null: ps cannot say). The
 * same processes: a pid that now leads another group is not one of them.
 */
async function stillAlive(
  ctx: RelaunchContext,
  target: RelaunchTarget,
  procs: readonly Proc[],
  opts: RelaunchOptions,
): Promise<Proc[] | null> {
  const rows = await readProcesses(
    ctx.runner,
    ctx.tools.ps,
    target.processName,
    opts.toolTimeoutMs,
  );
  return rows?.filter((p) =>
    p.state !== "Z" && procs.some((v) => v.pid === p.pid && v.pgid === p.pgid)
  ) ?? null;
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

/** What one rung did; a string: why it was skipped. */
type RungResult = { ok: boolean; step: string; attempts?: number; killed?: number } | string;

/**
 * SIGKILL to the workers stuck on one request, nothing else: the master starts new ones at once
 * and every other request goes on. Each pid is checked with ps just before: a worker of the
 * master found now, titled with the pool the status page named, started when the status page
 * said; a pid reused since, or one a forged status page names, is never hit.
 */
async function killStuckRung(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
): Promise<RungResult> {
  const stuck = target.stuck ?? [];
  if (stuck.length === 0) return "no stuck worker known";
  const { live, rows } = await look(ctx, target, "all");
  if (live === null || rows === null) return "no master of this service found";
  const now = ctx.clock.now() / 1000;
  const ours = stuck.filter((w) =>
    rows.some((p) =>
      p.pid === w.pid && p.ppid === live && p.pgid === live && p.state !== "Z" &&
      p.title === `php-fpm: pool ${w.pool}` &&
      (w.startedAt === 0 || Math.abs(now - p.ageSeconds - w.startedAt / 1000) <= START_SLACK_S)
    )
  ).map((w) => String(w.pid));
  if (ours.length === 0) return "none of the stuck workers is still this master's";
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
): Promise<RungResult> {
  const { live, rows } = await look(ctx, target);
  const state = rows?.find((p) => p.pid === live)?.state;
  // a dead or stopped (SIGSTOP) master cannot act on a signal: no use waiting for it
  if (live === null || state === undefined || state === "T") return "master gone or stopped";
  const args = ["-USR2", String(live)];
  const r = await ctx.runner.run(ctx.tools.kill, args, { timeoutMs: opts.toolTimeoutMs });
  if (r.code !== 0) return { ok: false, step: summary(ctx.tools.kill, args, r) };
  return { ok: await healthyWithin(ctx, verify, opts), step: `SIGUSR2 to master ${live}` };
}

/**
 * `restart`: with systemd, `systemctl restart` (systemd knows the unit's main process). With an
 * init script, whose stop signals whatever the pid file names (www-data's, on Debian), the master
 * found is stopped by pid (SIGQUIT, php-fpm's graceful stop; what is left after the stop timeout
 * gets SIGKILL), the pid file is cleared, and the init system starts php-fpm.
 */
async function restartRung(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
): Promise<RungResult> {
  const view = await look(ctx, target);
  const { live, rows } = view;
  // a stopped master would hold the init script's stop until its timeout
  if (live !== null && rows?.find((p) => p.pid === live)?.state === "T") return "master stopped";
  const commands = serviceCommands(ctx.init, ctx.tools, target.service);
  let last = "";
  if (trustsPidFile(ctx.init)) {
    // not knowing whether a master runs, a start could make a second one
    if (rows === null) return UNREADABLE;
    const stopped = live === null ? null : await stopMaster(ctx, target, live, view, opts);
    await clearPidFile(ctx.fs, target.pidFile);
    last = await startService(ctx, target, opts);
    if (stopped !== null) last = `${stopped}; ${last}`;
  } else {
    for (const [cmd, args] of commands.restart) {
      const r = await ctx.runner.run(cmd, args, { timeoutMs: opts.startTimeoutMs });
      last = summary(cmd, args, r);
    }
  }
  return { ok: await healthyWithin(ctx, verify, opts), step: last };
}

/**
 * php-fpm's graceful stop by pid: SIGQUIT to `master`, its pool's end awaited for up to
 * `startTimeoutMs`, then SIGKILL to what is left of it. What was done, for the step.
 */
async function stopMaster(
  ctx: RelaunchContext,
  target: RelaunchTarget,
  master: number,
  view: MasterView,
  opts: RelaunchOptions,
): Promise<string> {
  const pool = victimsOf(view, target) ?? [];
  const args = ["-QUIT", String(master)];
  const r = await ctx.runner.run(ctx.tools.kill, args, { timeoutMs: opts.toolTimeoutMs });
  if (r.code > 1) throw new Error(summary(ctx.tools.kill, args, r));
  const until = ctx.clock.now() + opts.startTimeoutMs;
  let left = pool;
  while (left.length > 0 && ctx.clock.now() + opts.killPollMs <= until) {
    await ctx.clock.sleep(opts.killPollMs);
    const alive = await stillAlive(ctx, target, left, opts);
    if (alive === null) break;
    left = alive;
  }
  if (left.length === 0) return `SIGQUIT to master ${master}`;
  const { survivors } = await killAll(ctx, target, left, opts);
  return `SIGQUIT to master ${master}, then SIGKILL to ${left.length} left${
    survivors.length > 0 ? ` (${survivors.length} survived)` : ""
  }`;
}

/**
 * The init system's start. An init script that finds the pid file naming a live php-fpm process
 * does nothing, and www-data (whose /run/php holds the pid file on Debian) can keep one there:
 * when the start made no master and the pid file names a process, php-fpm is started as the
 * init script would have started it, its binary with --daemonize and the service's
 * configuration. What was run, for the step.
 */
async function startService(
  ctx: RelaunchContext,
  target: RelaunchTarget,
  opts: RelaunchOptions,
): Promise<string> {
  let last = "";
  for (const [cmd, args] of serviceCommands(ctx.init, ctx.tools, target.service).start) {
    const r = await ctx.runner.run(cmd, args, { timeoutMs: opts.startTimeoutMs });
    last = summary(cmd, args, r);
  }
  const config = target.fpmConfig;
  if (!trustsPidFile(ctx.init) || target.byName || config === null) return last;
  const after = await look(ctx, { ...target, knownMaster: null });
  if (after.rows === null || after.rows.some((p) => mayBeMaster(p, target, after.mainPid))) {
    return last;
  }
  const named = await readPidFile(ctx.fs, target.pidFile);
  const binary = named === null ? null : await fpmBinary(ctx.fs, target.processName);
  if (binary === null) return last;
  logger.warn(
    "The pid file {path} names pid {pid}, not a master of {config}: {service}'s start took it for php-fpm; starting {binary} itself.",
    { path: target.pidFile, pid: named, config, service: target.service, binary },
  );
  const args = ["--daemonize", "--fpm-config", config];
  const r = await ctx.runner.run(binary, args, { timeoutMs: opts.startTimeoutMs });
  return `${last}; the pid file named pid ${named}, not a master: ${summary(binary, args, r)}`;
}

/**
 * SIGKILL the pool, then start it, up to `maxAttempts` times, each verified: a master of the
 * service runs (php-cgi: a process of its name) and the heartbeat answers.
 */
async function killRung(
  target: RelaunchTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
  opts: RelaunchOptions,
): Promise<RungResult> {
  const victims = victimsOf(await look(ctx, target), target);
  // not knowing what runs, a start could make a second master beside one left running
  if (victims === null) return { ok: false, step: `${UNREADABLE}: nothing killed or started` };
  const { killed, survivors } = await killAll(ctx, target, victims, opts);
  if (survivors.length > 0) {
    logger.warn("{survivors} {name} processes survived SIGKILL; starting anyway.", {
      survivors: survivors.length,
      name: target.processName,
    });
  }
  // a master that survived (stuck in I/O), or one an attempt started: its pid file is its own
  let masterRuns = survivors.some((p) => isMaster(p, target));
  let step = "";
  for (let attempt = 1; attempt <= opts.maxAttempts; attempt++) {
    // no master: a pid file naming another process must not turn the start away
    if (trustsPidFile(ctx.init) && !masterRuns) await clearPidFile(ctx.fs, target.pidFile);
    step = await startService(ctx, target, opts);
    logger.debug("Attempt {attempt}: {result}", { attempt, result: step });
    // the new master has a new pid: it is found by what it is
    const after = await look(ctx, { ...target, knownMaster: null });
    if (after.rows === null) {
      return { ok: false, step: `${step}; ${UNREADABLE} after it`, attempts: attempt, killed };
    }
    masterRuns = after.candidates > 0;
    const running = target.byName ? (after.rows ?? []).some((p) => p.state !== "Z") : masterRuns;
    if (running && await verify()) return { ok: true, step, attempts: attempt, killed };
    step = running
      ? `${target.processName} runs but the heartbeat is still failing`
      : `no ${target.processName} ${target.byName ? "process" : "master"} after ${step}`;
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
  ) => Promise<RungResult>
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
      if (typeof result === "string") {
        const why = result;
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
