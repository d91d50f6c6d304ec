/**
 * The default command, `php-relaunch <URI> <timeout> <emails> [restart-cgi]` and its file form:
 * the cron form's run of one period, or with `--once` a single probe.
 */
import type { Config } from "../config/settings.ts";
import type { MonitorOptions } from "../run/context.ts";
import { probeOnce, watchRun } from "../run/cron.ts";
import { pingAfterRun } from "../run/deadman_pings.ts";
import type { Deps } from "../shared/deps.ts";
import type { ExitCode } from "../shared/errors.ts";

/**
 * Runs the cron form's period, then pings the dead-man's switch with its outcome; or one probe
 * for `--once`, which pings nothing (a person runs it, not the schedule). Resolves to the exit
 * code.
 */
export async function runCronForm(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions,
): Promise<ExitCode> {
  return cfg.mode === "once"
    ? await probeOnce(cfg, deps, options)
    : await pingAfterRun(cfg, deps, () => watchRun(cfg, deps, options));
}
