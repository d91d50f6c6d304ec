/** `php-relaunch watch`: the long-running form, under systemd or any supervisor. */
import { loadConfig } from "../config/load.ts";
import type { Config, RawSettings } from "../config/settings.ts";
import type { MonitorOptions } from "../run/context.ts";
import { systemdNotifier } from "../run/notify.ts";
import { watchForever, type WatchOptions } from "../run/watch.ts";
import type { Deps } from "../shared/deps.ts";
import type { ExitCode } from "../shared/errors.ts";

/**
 * The options watch mode adds to `options` (which win): reloading the configuration from the
 * same command line on SIGHUP, and systemd's notification socket when it is given one.
 */
export async function watchOptions(
  raw: RawSettings,
  deps: Deps,
  options: MonitorOptions & WatchOptions,
): Promise<MonitorOptions & WatchOptions> {
  return {
    reload: () => loadConfig("watch", raw, deps),
    notifier: await systemdNotifier(deps.host, deps.runner, deps.fs.isExecutable, Deno.pid),
    ...options,
  };
}

/** Watches every target until SIGTERM or SIGINT; resolves to the exit code. */
export async function runWatchMode(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions & WatchOptions,
): Promise<ExitCode> {
  return await watchForever(cfg, deps, options);
}
