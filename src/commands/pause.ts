/**
 * `pause [target] [--for 30m] [--reason TEXT]` and `resume [target] [--reason TEXT]`: hold a
 * target's restarts and alerts while someone works on it (a deploy, a repair by hand), then give
 * it back. A pause is a file beside the target's state, so every kind of run honours it at its
 * next probe; it ends by itself at its time. One alert says it began, one that it ended.
 */
import { cronPolicy } from "../config/policy_settings.ts";
import type { Config, Target } from "../config/settings.ts";
import { freshMemory, storedTargets } from "../run/state.ts";
import { TargetWatch } from "../run/target.ts";
import { type MonitorOptions, pausesOf } from "../run/context.ts";
import type { Deps } from "../shared/deps.ts";
import { ConfigError, ExitCode } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { escapeControl } from "../shared/redact.ts";
import { seconds } from "../shared/time_units.ts";

/** The targets a pause or resume is about: the one named, or every one known. */
async function chosen(cfg: Config, deps: Deps): Promise<{ name: string; target?: Target }[]> {
  const name = cfg.commandTarget;
  if (cfg.targets.length > 0) {
    if (name === null) return cfg.targets.map((t) => ({ name: t.name, target: t }));
    const target = cfg.targets.find((t) => t.name === name);
    if (target === undefined) {
      throw new ConfigError([
        `No target "${name}" in ${cfg.configFile}: expected one of ${
          cfg.targets.map((t) => t.name).join(", ")
        }`,
      ]);
    }
    return [{ name, target }];
  }
  // the cron form has no file: its targets are named after their services, as their state
  if (name !== null) return [{ name }];
  const known = (await storedTargets(deps.fs, cfg.stateDir).catch(() => [] as string[]))
    .map((name) => ({ name }));
  if (known.length === 0) {
    throw new ConfigError([
      `No target to ${cfg.mode}: name one (php-relaunch ${cfg.mode} php8.2-fpm) or use --config`,
    ]);
  }
  return known;
}

/** Who is asking: the person behind sudo first, as a log line names them. */
function whoAsks(deps: Deps): string {
  const name = deps.host.env("SUDO_USER") || deps.host.env("LOGNAME") || deps.host.env("USER");
  return escapeControl(name ?? `uid ${deps.host.uid()}`).slice(0, 64);
}

/** Logs `message` and, when the target has channels, alerts with it; waits for the delivery. */
async function tell(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions,
  chosen: { name: string; target?: Target },
  message: string,
  subject: string,
  details: string[],
): Promise<void> {
  if (chosen.target === undefined) {
    logger.info("{message}", { message, target: chosen.name });
    return;
  }
  const watch = new TargetWatch(cfg, chosen.target, deps, options, freshMemory());
  watch.teller.event("info", message, subject, details, null);
  await watch.teller.alerts.flush();
}

/** `pause`: writes each chosen target's pause and tells it. */
export async function pauseTargets(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  const targets = await chosen(cfg, deps);
  const now = deps.clock.now();
  const by = whoAsks(deps);
  const reason = cfg.pause.reason ?? "no reason given";
  // refuse the whole command before pausing any target
  const plans = targets.map((t) => {
    const policy = t.target?.policy ?? cronPolicy(5000);
    const forMs = cfg.pause.forMs ?? policy.pauseDefaultMs;
    if (forMs > policy.pauseMaxMs) {
      throw new ConfigError([
        `Cannot pause ${t.name} for ${seconds(forMs)}: at most ${
          seconds(policy.pauseMaxMs)
        } (pause_max)`,
      ]);
    }
    return { ...t, until: now + forMs };
  });
  const pauses = pausesOf(cfg, options);
  if (options.pauses === undefined) {
    await Deno.mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
  }
  for (const plan of plans) {
    const until = new Date(plan.until).toISOString();
    await pauses.write(plan.name, { at: now, until: plan.until, by, reason });
    await tell(
      cfg,
      deps,
      options,
      plan,
      `Paused by ${by} until ${until} (${reason}): probes go on, restarts and alerts are held.`,
      "PHP watchdog paused",
      [`Resume early with: php-relaunch resume ${plan.name}`],
    );
    deps.stdout(`paused ${plan.name} until ${until} (${seconds(plan.until - now)}): ${reason}\n`);
  }
  return ExitCode.Ok;
}

/** `resume`: removes each chosen target's pause and tells it; a target not paused is said so. */
export async function resumeTargets(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  const by = whoAsks(deps);
  const pauses = pausesOf(cfg, options);
  for (const t of await chosen(cfg, deps)) {
    const pause = await pauses.read(t.name);
    if (!(await pauses.remove(t.name))) {
      deps.stdout(`${t.name} was not paused\n`);
      continue;
    }
    const why = cfg.pause.reason === null ? "" : ` (${cfg.pause.reason})`;
    await tell(
      cfg,
      deps,
      options,
      t,
      `Resumed by ${by}${why}: watching and restarting again.`,
      "PHP watchdog resumed",
      pause === null ? [] : [
        `Paused by ${pause.by} at ${new Date(pause.at).toISOString()}: ${pause.reason}`,
      ],
    );
    deps.stdout(`resumed ${t.name}\n`);
  }
  return ExitCode.Ok;
}
