/**
 * `php-relaunch watch`: the long-running service. Each target is probed in its own loop, at its
 * own interval, under its own lock (so a cron run for the same service stands aside). SIGTERM and
 * SIGINT stop it (an in-flight probe is abandoned, a restart is finished); SIGHUP reloads the
 * configuration, keeping the old one if the new one is invalid, and re-arms every target.
 */
import { publicUrl } from "../shared/redact.ts";
import type { Config, Target } from "../config/settings.ts";
import type { Clock, Deps } from "../shared/deps.ts";
import { rediscover } from "../config/load.ts";
import { ConfigError, describeError, ExitCode } from "../shared/errors.ts";
import { sayHolder, tryLock, waitForLock } from "../shared/lock.ts";
import { logger } from "../shared/log.ts";
import type { MonitorOptions } from "./context.ts";
import { loadWatch, retryAlerts, type TargetWatch, timingOf, writeMetrics } from "./target.ts";
import { freshCounters, renderMetrics } from "../record/metrics.ts";
import type { AlertQueue } from "../alert/queue.ts";
import { type Endpoint, serveMetricsEndpoint } from "../record/metrics_endpoint.ts";
import { type Notifier, silentNotifier } from "./notify.ts";
import { MasterExits } from "./master_exits.ts";
import { nextDue } from "./schedule.ts";
import { PacedSaves } from "./paced_saves.ts";
import { FleetLink } from "./fleet.ts";
import { fileStateStore, rearmStored } from "./state.ts";
import { Balancer } from "./drain.ts";
import type { BalancerSettings } from "../config/balancer_settings.ts";
import { type Beat, silentLoop } from "./liveness.ts";
import { watchPings } from "./deadman_pings.ts";

/** The signals watch mode answers. */
export type WatchSignal = "SIGTERM" | "SIGINT" | "SIGHUP";

/** Subscribes to process signals; returns the function that unsubscribes. */
export type SignalSource = (signal: WatchSignal, handler: () => void) => () => void;

/** What watch mode needs beyond the monitor's options. */
export interface WatchOptions {
  /** Process signals (real ones by default). */
  signals?: SignalSource;
  /** Loads the configuration again, for SIGHUP. */
  reload?: () => Promise<Config>;
  /** systemd's notification socket, or nobody. */
  notifier?: Notifier;
}

/** How often watch mode retries the alerts that could not be delivered. */
const RETRY_ALERTS_MS = 60_000;
/** How often `--auto` looks whether php-fpm's services and pools changed. */
const REDISCOVER_MS = 30_000;
/** How often watch mode rewrites the metrics file (node_exporter reads it when scraped). */
const METRICS_FILE_MS = 15_000;
/**
 * How long a stop waits for alerts under way before ending them: what is not delivered by then
 * is queued in the outbox for the next start (or cron run).
 */
export const STOP_GRACE_MS = 1000;

/** Runs `work` when triggered, at most once per `everyMs` and never twice at the same time. */
function throttled(clock: Clock, everyMs: number, work: () => Promise<void>) {
  let last = -Infinity;
  let running: Promise<void> | null = null;
  return {
    trigger(): void {
      if (running !== null || clock.now() - last < everyMs) return;
      last = clock.now();
      running = work().finally(() => running = null);
    },
    /** Waits for a run under way, if any. */
    settled: (): Promise<void> => running ?? Promise.resolve(),
  };
}

/** Serves /metrics on loopback until `signal` aborts; an address it cannot use is exit 2. */
function serveMetrics(
  listen: { hostname: string; port: number },
  render: () => Promise<string>,
  signal: AbortSignal,
): Endpoint {
  try {
    return serveMetricsEndpoint(listen, render, signal);
  } catch (err) {
    throw new ConfigError([
      `Cannot serve metrics on ${listen.hostname}:${listen.port}: ${describeError(err)}`,
    ]);
  }
}

/** Starts the agent; when it cannot listen, /metrics is stopped too before the exit 2. */
function startBalancer(
  settings: BalancerSettings,
  clock: Clock,
  metricsStop: AbortController,
): Balancer {
  try {
    return new Balancer(settings, clock);
  } catch (err) {
    metricsStop.abort();
    throw err;
  }
}

/** Real process signals. Listening replaces Deno's default exit, so we exit ourselves. */
export const processSignals: SignalSource = (signal, handler) => {
  Deno.addSignalListener(signal, handler);
  return () => Deno.removeSignalListener(signal, handler);
};

/**
 * Probes one target until `stop` aborts. `beat` is called after every probe, with the watch.
 * Resolves to the watch's alerts, still on their way (never waited for here: a slow channel must
 * not hold up a reload or a stop).
 */
async function targetLoop(
  cfg: Config,
  target: Target,
  deps: Deps,
  options: MonitorOptions,
  stop: AbortSignal,
  beat: (watch: TargetWatch | null) => void,
  balancer: Balancer | null = null,
): Promise<AlertQueue | null> {
  const tryLockFile = options.lock ?? tryLock;
  const { lock } = await waitForLock({
    take: () => tryLockFile(target.lockFile),
    clock: deps.clock,
    pollMs: target.policy.intervalMs,
    signal: stop,
    onWait: () =>
      logger.info("Another php-relaunch holds {lock}; waiting for it.", {
        lock: target.lockFile,
        target: target.name,
      }),
    onSleep: () => beat(null),
  });
  if (lock === null) return null;
  using _held = lock;
  await sayHolder(lock, "watch");
  const { watch, store } = await loadWatch(cfg, target, deps, options);
  if (balancer !== null) watch.ctx.drain = balancer.forTarget(target);
  const timing = timingOf(target.policy);
  let dueAt = deps.clock.now();
  using exits = new MasterExits(deps, target);
  const saves = new PacedSaves(store, deps.clock);
  try {
    while (!stop.aborted) {
      beat(watch);
      const step = await watch.step(target.policy, stop);
      beat(watch);
      if (step === null) break;
      await saves.save(watch.memory);
      const now = deps.clock.now();
      // after a long stall (a restart), probe now rather than catch up on missed probes
      dueAt = Math.max(nextDue({ dueAt, now, ...step }, timing), now);
      // the master's exit wakes the watch at once: the probe it makes is the grid's new start
      if (await exits.sleep(watch.memory.state.masterPid, dueAt - now, stop)) {
        dueAt = deps.clock.now();
        watch.ctx.masterExited = true;
      }
    }
  } finally {
    await saves.flush();
  }
  return watch.teller.alerts;
}

/** Re-arms every target's memory: SIGHUP forgets giving up. */
async function rearmAll(cfg: Config, options: MonitorOptions): Promise<void> {
  for (const target of cfg.targets) {
    await rearmStored(options.store ?? fileStateStore(target.stateFile));
  }
}

/** Runs until SIGTERM or SIGINT; resolves to exit code 0. */
export async function watchForever(
  initial: Config,
  deps: Deps,
  options: MonitorOptions & WatchOptions = {},
): Promise<ExitCode> {
  let cfg = initial;
  // the live watches, for the metrics (the endpoint is bound once: a reload does not move it)
  const live = new Map<string, TargetWatch>();
  const metricsStop = new AbortController();
  const server = initial.metricsListen === null ? null : serveMetrics(
    initial.metricsListen,
    () =>
      renderMetrics(cfg.targets.map((t) => ({
        name: t.name,
        counters: live.get(t.name)?.memory.counters ?? freshCounters(),
      }))),
    metricsStop.signal,
  );
  // HAProxy's agent-check: bound once, as /metrics; its drains outlive reloads
  const balancer = initial.balancer
    ? startBalancer(initial.balancer, deps.clock, metricsStop)
    : null;
  const signals = options.signals ?? processSignals;
  const notifier = options.notifier ?? silentNotifier;
  let next: Config | null = null;
  let stopping = false;
  let generation = new AbortController();
  const lastBeat = new Map<string, Beat>();

  const stop = () => {
    if (!stopping) logger.info("Stopping: finishing what is under way.");
    stopping = true;
    generation.abort();
  };
  const reload = async (why = "SIGHUP") => {
    if (!options.reload) return;
    try {
      next = await options.reload();
      logger.info("{why}: configuration reloaded ({n} targets); restarting re-armed.", {
        why,
        n: next.targets.length,
      });
      void notifier.send("RELOADING=1");
      generation.abort();
    } catch (err) {
      const problem = err instanceof ConfigError ? err.issues.join("; ") : describeError(err);
      logger.error("{how}: the new configuration is invalid, keeping the old one: {why}", {
        how: why,
        why: problem,
      });
    }
  };
  const unsubscribe = [
    signals("SIGTERM", stop),
    signals("SIGINT", stop),
    signals("SIGHUP", () => void reload()),
  ];

  const watchdogStop = new AbortController();
  const watchdog = (async () => {
    const every = notifier.watchdogEveryMs;
    if (every === null) return;
    while (!watchdogStop.signal.aborted) {
      await deps.clock.sleep(every, watchdogStop.signal);
      const now = deps.clock.now();
      // a loop silent for four watchdog periods plus its probe's timeout is hung (a relaunch
      // is only slow: its commands have timeouts): let systemd see the missing ping
      const hung = silentLoop(cfg.targets, lastBeat, now, (t) => 4 * every + t.timeoutMs);
      if (hung === null && !watchdogStop.signal.aborted) await notifier.send("WATCHDOG=1");
    }
  })();
  // the dead-man's switch, told on the same condition, at its own pace
  const deadman = watchPings(() => cfg, lastBeat, deps);

  // between probes, by whichever target loop comes first: the metrics file, and a retry of the
  // alerts that could not be delivered
  const metricsFile = throttled(
    deps.clock,
    METRICS_FILE_MS,
    () => writeMetrics(cfg, options, live),
  );
  // retries stop with watch mode: the one under way is ended, the rest wait in the outbox
  const retriesStop = new AbortController();
  const retries = throttled(
    deps.clock,
    RETRY_ALERTS_MS,
    () => retryAlerts(cfg, deps, options, retriesStop.signal),
  );
  // the alerts of every generation of loops (a reload starts new ones), delivered meanwhile
  const queues = new Set<AlertQueue>();
  // --auto: a service or pool added, removed or changed is watched as discovery now finds it
  const pools = throttled(deps.clock, REDISCOVER_MS, async () => {
    if (cfg.discovered === null || next !== null || stopping) return;
    if ((await rediscover(deps)) === cfg.discovered) return;
    logger.info("php-fpm's services or pools changed: discovering them again.");
    await reload("--auto");
  });

  try {
    logger.info("Watching {n} targets: {names}.", {
      n: cfg.targets.length,
      names: cfg.targets.map((t) => `${t.name} (${publicUrl(t.url)})`).join(", "),
    });
    let ready = false;
    while (!stopping) {
      generation = new AbortController();
      for (const t of cfg.targets) lastBeat.set(t.name, { at: deps.clock.now(), watch: null });
      // the fleet's restart cap: one lease for this generation's targets, revoked when it ends
      const fleet = cfg.fleet ? new FleetLink(cfg.fleet, deps) : null;
      const loops = cfg.targets.map((t) =>
        targetLoop(cfg, t, deps, { ...options, fleet }, generation.signal, (watch) => {
          lastBeat.set(t.name, { at: deps.clock.now(), watch });
          if (watch !== null) live.set(t.name, watch);
          retries.trigger();
          pools.trigger();
          deadman.wake();
          if (cfg.metricsFile !== null) metricsFile.trigger();
        }, balancer)
      );
      balancer?.keepOnly(cfg.targets.map((t) => t.name));
      if (!ready) {
        ready = true;
        await notifier.send("READY=1");
      }
      // the queues done delivering are forgotten, so that reloads do not pile them up
      for (const queue of queues) if (queue.idle) queues.delete(queue);
      try {
        for (const queue of await Promise.all(loops)) if (queue !== null) queues.add(queue);
      } finally {
        await fleet?.close();
      }
      if (next !== null && !stopping) {
        cfg = next;
        next = null;
        await rearmAll(cfg, options);
        await notifier.send("READY=1");
      }
    }
    await notifier.send("STOPPING=1");
    logger.info("Stopped.");
    return ExitCode.Ok;
  } finally {
    watchdogStop.abort();
    retriesStop.abort();
    await watchdog;
    await deadman.stop();
    await Promise.all([...queues].map((q) => q.flush(STOP_GRACE_MS)));
    await retries.settled();
    await pools.settled();
    await metricsFile.settled();
    metricsStop.abort();
    await server?.finished;
    await balancer?.stop();
    for (const off of unsubscribe) off();
  }
}
