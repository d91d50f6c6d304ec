/**
 * Relaunching php-fpm the way the original did, because hung or stopped (SIGSTOP) workers can
 * block a polite stop: SIGKILL every process of the service, then start it through the init
 * system, verifying each attempt.
 */
import type { Clock, ProcessRunner, RunResult } from "./deps.ts";
import { describeError } from "./errors.ts";
import { logger } from "./log.ts";
import { type InitSystem, serviceCommands, type ServiceTarget, type Tools } from "./service.ts";

/** Limits of one relaunch. */
export interface RelaunchOptions {
  /** Start attempts before giving up (the original's MAX_LAUNCH_ATTEMPTS). */
  maxAttempts: number;
  /** Pause between attempts. */
  retryDelayMs: number;
  /** Rounds of pkill/pgrep before giving up on processes that will not die (state D). */
  killRounds: number;
  /** Pause between kill rounds. */
  killPollMs: number;
  /** Limit for one `service ... start` / `systemctl start`. */
  startTimeoutMs: number;
  /** Limit for one pgrep/pkill. */
  toolTimeoutMs: number;
}

/** The original's 10 attempts, about 2 s apart. */
export const DEFAULT_RELAUNCH: RelaunchOptions = {
  maxAttempts: 10,
  retryDelayMs: 2000,
  killRounds: 10,
  killPollMs: 200,
  startTimeoutMs: 30_000,
  toolTimeoutMs: 5_000,
};

/** What a relaunch did. */
export interface RelaunchReport {
  ok: boolean;
  service: string;
  /** Start attempts made. */
  attempts: number;
  /** Processes of the service that were running when we started killing. */
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
  options?: RelaunchOptions;
}

function summary(cmd: string, args: readonly string[], r: RunResult): string {
  const how = r.timedOut ? "timed out" : r.signal ? `killed by ${r.signal}` : `exited ${r.code}`;
  const said = (r.stderr || r.stdout).split("\n")[0] ?? "";
  return `${[cmd, ...args].join(" ")} ${how}${said ? `: ${said}` : ""}`;
}

/** Counts the processes named `name` (pgrep exits 1 when there are none). */
async function countProcesses(ctx: RelaunchContext, name: string, opts: RelaunchOptions) {
  const r = await ctx.runner.run(ctx.tools.pgrep, ["-x", name], {
    timeoutMs: opts.toolTimeoutMs,
  });
  if (r.code !== 0 && r.code !== 1) {
    throw new Error(summary(ctx.tools.pgrep, ["-x", name], r));
  }
  return r.code === 0 ? r.stdout.split("\n").filter((l) => l.trim() !== "").length : 0;
}

async function killAll(
  ctx: RelaunchContext,
  name: string,
  opts: RelaunchOptions,
): Promise<{ killed: number; survivors: number }> {
  const killed = await countProcesses(ctx, name, opts);
  let survivors = killed;
  for (let round = 0; round < opts.killRounds && survivors > 0; round++) {
    const r = await ctx.runner.run(ctx.tools.pkill, ["-KILL", "-x", name], {
      timeoutMs: opts.toolTimeoutMs,
    });
    if (r.code > 1) throw new Error(summary(ctx.tools.pkill, ["-KILL", "-x", name], r));
    await ctx.clock.sleep(opts.killPollMs);
    survivors = await countProcesses(ctx, name, opts);
  }
  return { killed, survivors };
}

/**
 * Kills every process of `target` and starts the service again, up to `maxAttempts` times, until
 * its processes run and `verify` (a fresh probe) says it is healthy. Never throws: failures,
 * including commands that cannot be run, are in the report.
 */
export async function relaunch(
  target: ServiceTarget,
  ctx: RelaunchContext,
  verify: () => Promise<boolean>,
): Promise<RelaunchReport> {
  const opts = ctx.options ?? DEFAULT_RELAUNCH;
  const report: RelaunchReport = {
    ok: false,
    service: target.service,
    attempts: 0,
    killed: 0,
    reason: "",
  };
  try {
    const { killed, survivors } = await killAll(ctx, target.processName, opts);
    report.killed = killed;
    if (survivors > 0) {
      logger.warn("{survivors} {name} processes survived SIGKILL; starting anyway.", {
        survivors,
        name: target.processName,
      });
    }
    for (let attempt = 1; attempt <= opts.maxAttempts; attempt++) {
      report.attempts = attempt;
      let lastStart = "";
      for (const [cmd, args] of serviceCommands(ctx.init, ctx.tools, target.service).start) {
        const r = await ctx.runner.run(cmd, args, { timeoutMs: opts.startTimeoutMs });
        lastStart = summary(cmd, args, r);
        logger.debug("Attempt {attempt}: {result}", { attempt, result: lastStart });
      }
      const running = await countProcesses(ctx, target.processName, opts);
      if (running > 0 && await verify()) {
        report.ok = true;
        report.reason = "";
        return report;
      }
      report.reason = running === 0
        ? `no ${target.processName} process after ${lastStart}`
        : `${target.processName} runs but the heartbeat is still failing`;
      if (attempt < opts.maxAttempts) await ctx.clock.sleep(opts.retryDelayMs);
    }
  } catch (err) {
    // a command that cannot be run (missing, not allowed) will not work on the next attempt
    report.reason = describeError(err);
  }
  return report;
}
