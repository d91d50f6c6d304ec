/**
 * When php-relaunch tells its dead-man's switch it is alive: after each cron run (the failure
 * form when the run's exit code is not 0), and in watch mode at least every `[deadman] every`
 * while every target's probe loop makes progress (the failure form while a target is given up).
 * A killed or hung watchdog stops pinging, and the switch's service tells someone.
 */
import { DeadmanSwitch, filePingMemory } from "../alert/deadman_switch.ts";
import { deadmanStatePath } from "../config/deadman_settings.ts";
import type { Config } from "../config/settings.ts";
import type { Deps } from "../shared/deps.ts";
import { ExitCode } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { webhookName } from "../shared/redact.ts";
import { type Beat, silentLoop } from "./liveness.ts";

/** What a run's exit code says, for the failure ping (Uptime Kuma shows it); null for 0. */
export function failureOfExit(code: number): string | null {
  switch (code) {
    case ExitCode.Ok:
      return null;
    case ExitCode.PhpDown:
      return "exit 3: php-fpm failed and is still down";
    case ExitCode.Misconfigured:
      return "exit 4: the heartbeat answered, but not as a heartbeat";
    case ExitCode.Unreachable:
      return "exit 7: the heartbeat's host refused the connection or did not resolve";
    default:
      return `exit ${code}`;
  }
}

function switchOf(cfg: Config, deps: Deps): DeadmanSwitch | null {
  return cfg.deadman && new DeadmanSwitch(
    cfg.deadman.url,
    deps,
    filePingMemory(deadmanStatePath(cfg.stateDir)),
  );
}

/**
 * Runs `run` (a cron run's period) and then pings the switch, when one is set: its failure form
 * when the exit code is not 0, or when `run` throws (which is thrown again). The ping comes after
 * the run let go of its locks, so it never delays the next run's probes.
 */
export async function pingAfterRun(
  cfg: Config,
  deps: Deps,
  run: () => Promise<ExitCode>,
): Promise<ExitCode> {
  const deadman = switchOf(cfg, deps);
  let code: ExitCode = ExitCode.Internal;
  try {
    code = await run();
    return code;
  } finally {
    await deadman?.ping(failureOfExit(code));
  }
}

/**
 * Why watch mode pings the failure form: a target given up (restarting exhausted while php-fpm
 * is still down), when the watchdog can no longer do its job; null otherwise.
 */
function givenUp(cfg: Config, beats: ReadonlyMap<string, Beat>): string | null {
  const target = cfg.targets.find((t) => {
    const state = beats.get(t.name)?.watch?.memory.state;
    return state !== undefined && state.givenUpAt !== null && state.incident !== null;
  });
  return target === undefined ? null : `given up restarting ${target.name}`;
}

/**
 * Watch mode's pings, in a loop of their own beside the probe loops, which they never wait on:
 * one at once, then every `[deadman] every` of the configuration `config()` gives now. A target
 * loop silent for two periods, its interval and its probe's timeout holds them (a restart under
 * way is slow, not silent), logged when they stop and start again. The loop runs while a switch
 * is set: `wake()` (at every beat) starts it when SIGHUP set one. `stop()` ends it; a ping under
 * way is abandoned.
 */
export function watchPings(
  config: () => Config,
  beats: ReadonlyMap<string, Beat>,
  deps: Deps,
): { wake(): void; stop(): Promise<void> } {
  const stopping = new AbortController();
  const signal = stopping.signal;
  let current: DeadmanSwitch | null = null;
  let heldBy: string | null = null;
  let running: Promise<void> | null = null;
  const pingNow = async (cfg: Config, everyMs: number, deadman: DeadmanSwitch) => {
    const silent = silentLoop(
      cfg.targets,
      beats,
      deps.clock.now(),
      (t) => 2 * everyMs + t.policy.intervalMs + t.timeoutMs,
    );
    const fields = { url: webhookName(deadman.url), target: silent?.name ?? heldBy };
    if (silent !== null && heldBy === null) {
      logger.warn(
        "Dead-man's switch {url}: not pinged while the probe loop of {target} makes no progress.",
        fields,
      );
    } else if (silent === null && heldBy !== null) {
      logger.info(
        "Dead-man's switch {url}: pinged again: the probe loop of {target} goes on.",
        fields,
      );
    }
    heldBy = silent?.name ?? null;
    if (silent === null) await deadman.ping(givenUp(cfg, beats), signal);
  };
  const loop = async () => {
    let dueAt = deps.clock.now();
    while (!signal.aborted) {
      const cfg = config();
      if (cfg.deadman === null) return;
      if (current?.url.href !== cfg.deadman.url.href) current = switchOf(cfg, deps)!;
      await pingNow(cfg, cfg.deadman.everyMs, current);
      // on the period's grid; a ping that took longer than a period is followed by one at once
      dueAt = Math.max(dueAt + cfg.deadman.everyMs, deps.clock.now());
      await deps.clock.sleep(dueAt - deps.clock.now(), signal);
    }
  };
  const wake = () => {
    if (running !== null || signal.aborted || config().deadman === null) return;
    running = loop().finally(() => running = null);
  };
  wake();
  return {
    wake,
    async stop() {
      stopping.abort();
      await running;
    },
  };
}
