/**
 * Prometheus metrics: what each target counts (kept in its state file, so cron runs add up), and
 * their exposition through prom-client's registry, loaded only when metrics are asked for: as a
 * node_exporter textfile (written atomically) or on a loopback /metrics endpoint in watch mode.
 */
import type { PoolStatus } from "../fpm/status_page.ts";
import type { OpcacheStatus } from "../fpm/opcache.ts";
import { writeFileAtomic } from "../shared/safe_file.ts";

/** Upper bounds of the probe latency histogram, in seconds. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A target's counters, as kept between runs. */
export interface Counters {
  /** Probes by "<verdict> <label>" (e.g. "healthy 200", "php_down timeout"). */
  probes: Record<string, number>;
  /** Cumulative counts per bucket of {@link LATENCY_BUCKETS}, then the sum and the count. */
  latency: { buckets: number[]; sum: number; count: number };
  restarts: { ok: number; failed: number };
  giveUps: number;
  lastRestartAt: number | null;
  /** The pool's last status read (the gauges, and what early warnings compare), or null. */
  pool: {
    /** The pool's name, as its status page says it. */
    name?: string | undefined;
    active: number;
    idle: number;
    total: number;
    listenQueue: number;
    maxChildrenReached: number;
    slowRequests: number;
    acceptedConn: number;
  } | null;
  /**
   * The pool's resident memory at the last process read (KiB), or null; `byPool`: each pool's
   * workers when the master serves several.
   */
  poolMemory: {
    sumKb: number;
    largestKb: number;
    byPool?: Record<string, { sumKb: number; largestKb: number }> | undefined;
  } | null;
  /** OPcache's last read, where it is watched (counters saved before lack it). */
  opcache?: OpcacheCounters | undefined;
  /**
   * With several pools: each pool's last probe (answered or not), and the kills of its stuck
   * workers while another pool answered, by result.
   */
  pools: Record<string, { up: boolean; killsOk: number; killsFailed: number }>;
  /** Children that exited on a signal, as php-fpm's error log says: by pool, then by signal. */
  childDeaths?: Record<string, Record<string, number>> | undefined;
  /**
   * What the pool's busy workers waited on at the last look after a failure (the most waited on
   * peers first); cleared when the heartbeat answers. Unset: never looked.
   */
  upstream?: { pool: string; waits: { peer: string; waits: number }[] } | undefined;
}

/** OPcache's last read, kept between runs: the gauges, and what the next read compares. */
export interface OpcacheCounters {
  /** When it was last asked, answered or not: asks are spaced by opcache_interval. */
  at: number;
  /** When it last answered with OPcache's state (null: never). */
  readAt: number | null;
  /** OPcache's state at `readAt`, or null. */
  status: OpcacheStatus | null;
  /** Since when OPcache has had a restart pending, or null. */
  pendingSince: number | null;
  /** Why the last ask gave no state (OPcache off, no script, no answer), or null. */
  problem: string | null;
}

/** Counters with nothing counted. */
export function freshCounters(): Counters {
  return {
    probes: {},
    latency: { buckets: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 },
    restarts: { ok: 0, failed: 0 },
    giveUps: 0,
    lastRestartAt: null,
    pool: null,
    poolMemory: null,
    pools: {},
  };
}

/** Counts one probe of a pool among several; `kill`: a kill of its stuck workers, and its result. */
export function countPoolProbe(
  c: Counters,
  pool: string,
  up: boolean,
  kill: boolean | null = null,
): Counters {
  const was = c.pools[pool] ?? { up, killsOk: 0, killsFailed: 0 };
  return {
    ...c,
    pools: {
      ...c.pools,
      [pool]: {
        up,
        killsOk: was.killsOk + (kill === true ? 1 : 0),
        killsFailed: was.killsFailed + (kill === false ? 1 : 0),
      },
    },
  };
}

/** Counts one probe. */
export function countProbe(c: Counters, verdict: string, label: string, ms: number): Counters {
  const key = `${verdict} ${label}`;
  const seconds = ms / 1000;
  return {
    ...c,
    probes: { ...c.probes, [key]: (c.probes[key] ?? 0) + 1 },
    latency: {
      buckets: c.latency.buckets.map((n, i) => n + (seconds <= LATENCY_BUCKETS[i]! ? 1 : 0)),
      sum: c.latency.sum + seconds,
      count: c.latency.count + 1,
    },
  };
}

/** Counts one restart. */
export function countRestart(c: Counters, ok: boolean, at: number): Counters {
  return {
    ...c,
    restarts: { ok: c.restarts.ok + (ok ? 1 : 0), failed: c.restarts.failed + (ok ? 0 : 1) },
    lastRestartAt: at,
  };
}

/** Counts one giving up. */
export function countGiveUp(c: Counters): Counters {
  return { ...c, giveUps: c.giveUps + 1 };
}

/** Keeps the pool's numbers for the gauges. */
export function countPool(c: Counters, s: PoolStatus): Counters {
  return {
    ...c,
    pool: {
      name: s.pool,
      active: s.active,
      idle: s.idle,
      total: s.total,
      listenQueue: s.listenQueue,
      maxChildrenReached: s.maxChildrenReached,
      slowRequests: s.slowRequests,
      acceptedConn: s.acceptedConn,
    },
  };
}

type Value = { value: number; labels: Record<string, string>; metricName?: string };
type Family = {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: Value[];
};

/** The metric families of some targets (exported for tests). */
export function families(targets: readonly { name: string; counters: Counters }[]): Family[] {
  const f = (name: string, type: Family["type"], help: string): Family => ({
    name: `php_relaunch_${name}`,
    help,
    type,
    values: [],
  });
  const probes = f("probes_total", "counter", "Heartbeat probes by verdict and answer.");
  const latency = f("probe_duration_seconds", "histogram", "How long heartbeat probes took.");
  const restarts = f("restarts_total", "counter", "php-fpm restarts by result.");
  const giveUps = f("give_ups_total", "counter", "Times restarting was given up.");
  const last = f(
    "last_restart_timestamp_seconds",
    "gauge",
    "When php-fpm was last restarted (0: never).",
  );
  const pool = {
    active: f("pool_active_processes", "gauge", "Busy workers at the last status read."),
    idle: f("pool_idle_processes", "gauge", "Idle workers at the last status read."),
    total: f("pool_total_processes", "gauge", "Workers at the last status read."),
    listenQueue: f(
      "pool_listen_queue",
      "gauge",
      "Requests waiting for a worker (a unix socket's from the kernel, with ss).",
    ),
    maxChildrenReached: f(
      "pool_max_children_reached",
      "gauge",
      "php-fpm's count of pm.max_children reached since it started.",
    ),
    slowRequests: f("pool_slow_requests", "gauge", "php-fpm's count of slow requests."),
    acceptedConn: f("pool_accepted_connections", "gauge", "php-fpm's accepted connections."),
  };
  for (const { name: target, counters: c } of targets) {
    for (const [key, value] of Object.entries(c.probes)) {
      const [verdict = "", answer = ""] = key.split(" ");
      probes.values.push({ value, labels: { target, verdict, answer } });
    }
    LATENCY_BUCKETS.forEach((le, i) => {
      latency.values.push({
        value: c.latency.buckets[i] ?? 0,
        labels: { target, le: String(le) },
        metricName: `${latency.name}_bucket`,
      });
    });
    latency.values.push(
      {
        value: c.latency.count,
        labels: { target, le: "+Inf" },
        metricName: `${latency.name}_bucket`,
      },
      { value: c.latency.sum, labels: { target }, metricName: `${latency.name}_sum` },
      { value: c.latency.count, labels: { target }, metricName: `${latency.name}_count` },
    );
    restarts.values.push(
      { value: c.restarts.ok, labels: { target, result: "ok" } },
      { value: c.restarts.failed, labels: { target, result: "failed" } },
    );
    giveUps.values.push({ value: c.giveUps, labels: { target } });
    last.values.push({ value: (c.lastRestartAt ?? 0) / 1000, labels: { target } });
    if (c.pool !== null) {
      for (const [key, family] of Object.entries(pool)) {
        // the pool's name beside the target's: which pool of the service the figures are of
        const labels = c.pool.name ? { target, pool: c.pool.name } : { target };
        family.values.push({ value: c.pool[key as keyof typeof pool], labels });
      }
    }
  }
  return [
    probes,
    latency,
    restarts,
    giveUps,
    last,
    ...Object.values(pool),
    ...memoryFamilies(targets),
    ...poolFamilies(targets),
    childDeathFamily(targets),
    upstreamFamily(targets),
    ...opcacheFamilies(targets),
  ];
}

/** What the pools' busy workers waited on at the last look, by peer. */
function upstreamFamily(targets: readonly { name: string; counters: Counters }[]): Family {
  const waits: Family = {
    name: "php_relaunch_pool_upstream_waits",
    help:
      "Busy workers waiting on each peer (address:port, unix socket, mount) at the last look after a failure.",
    type: "gauge",
    values: [],
  };
  for (const { name: target, counters: c } of targets) {
    for (const w of c.upstream?.waits ?? []) {
      waits.values.push({
        value: w.waits,
        labels: { target, pool: c.upstream!.pool, peer: w.peer },
      });
    }
  }
  return waits;
}

/** OPcache's gauges, from its last read, where it is watched. */
function opcacheFamilies(targets: readonly { name: string; counters: Counters }[]): Family[] {
  const f = (name: string, type: Family["type"], help: string): Family => ({
    name: `php_relaunch_opcache_${name}`,
    help,
    type,
    values: [],
  });
  const memory = f(
    "memory_bytes",
    "gauge",
    "OPcache's shared memory by state (used, free, wasted).",
  );
  const hit = f("hit_ratio", "gauge", "OPcache's hits / (hits + misses) since php-fpm started.");
  const oom = f(
    "oom_restarts_total",
    "counter",
    "OPcache restarts for want of memory, as OPcache counts them since php-fpm started.",
  );
  const hash = f(
    "hash_restarts_total",
    "counter",
    "OPcache restarts for want of keys (opcache.max_accelerated_files) since php-fpm started.",
  );
  const interned = f(
    "interned_strings_bytes",
    "gauge",
    "OPcache's interned-strings buffer by state (used, free).",
  );
  const keys = f("cached_keys", "gauge", "Keys in OPcache's hash table.");
  const maxKeys = f("max_cached_keys", "gauge", "The most keys OPcache's hash table holds.");
  const full = f("cache_full", "gauge", "Whether OPcache says it is full (1) or not (0).");
  const pending = f(
    "restart_pending",
    "gauge",
    "Whether OPcache waits for a restart (1) or not (0).",
  );
  const readAt = f(
    "read_timestamp_seconds",
    "gauge",
    "When OPcache's status was last read (the other OPcache figures are of then).",
  );
  for (const { name: target, counters: c } of targets) {
    const s = c.opcache?.status;
    if (s === undefined || s === null) continue;
    for (
      const [state, value] of [["used", s.usedBytes], ["free", s.freeBytes], [
        "wasted",
        s.wastedBytes,
      ]] as const
    ) {
      memory.values.push({ value, labels: { target, state } });
    }
    const lookups = s.hits + s.misses;
    hit.values.push({ value: lookups === 0 ? 0 : s.hits / lookups, labels: { target } });
    oom.values.push({ value: s.oomRestarts, labels: { target } });
    hash.values.push({ value: s.hashRestarts, labels: { target } });
    interned.values.push(
      { value: s.internedUsedBytes, labels: { target, state: "used" } },
      { value: s.internedFreeBytes, labels: { target, state: "free" } },
    );
    keys.values.push({ value: s.cachedKeys, labels: { target } });
    maxKeys.values.push({ value: s.maxCachedKeys, labels: { target } });
    full.values.push({ value: s.cacheFull ? 1 : 0, labels: { target } });
    pending.values.push({ value: s.restartPending ? 1 : 0, labels: { target } });
    readAt.values.push({ value: (c.opcache?.readAt ?? 0) / 1000, labels: { target } });
  }
  return [memory, hit, oom, hash, interned, keys, maxKeys, full, pending, readAt];
}

/** Each pool of a target with several: whether it answers, and the kills of its stuck workers. */
function poolFamilies(targets: readonly { name: string; counters: Counters }[]): Family[] {
  const up: Family = {
    name: "php_relaunch_pool_up",
    help: "Whether the pool's own probe answered at the last probe (targets with several pools).",
    type: "gauge",
    values: [],
  };
  const kills: Family = {
    name: "php_relaunch_pool_kills_total",
    help: "Kills of a pool's stuck workers while another pool of its service answered.",
    type: "counter",
    values: [],
  };
  for (const { name: target, counters: c } of targets) {
    for (const [pool, p] of Object.entries(c.pools)) {
      up.values.push({ value: p.up ? 1 : 0, labels: { target, pool } });
      kills.values.push(
        { value: p.killsOk, labels: { target, pool, result: "ok" } },
        { value: p.killsFailed, labels: { target, pool, result: "failed" } },
      );
    }
  }
  return [up, kills];
}

/** The pools' resident memory, where it was read. */
function memoryFamilies(targets: readonly { name: string; counters: Counters }[]): Family[] {
  const sum: Family = {
    name: "php_relaunch_pool_resident_bytes",
    help: "Resident memory of the pool's processes at the last read.",
    type: "gauge",
    values: [],
  };
  const largest: Family = {
    name: "php_relaunch_pool_largest_worker_bytes",
    help: "Resident memory of the pool's largest worker at the last read.",
    type: "gauge",
    values: [],
  };
  for (const { name: target, counters: c } of targets) {
    if (c.poolMemory === null) continue;
    const pools = Object.entries(c.poolMemory.byPool ?? {});
    if (pools.length === 0) {
      sum.values.push({ value: c.poolMemory.sumKb * 1024, labels: { target } });
      largest.values.push({ value: c.poolMemory.largestKb * 1024, labels: { target } });
    }
    // a master of several pools: each pool's workers (the master's own few MB in none)
    for (const [pool, m] of pools) {
      sum.values.push({ value: m.sumKb * 1024, labels: { target, pool } });
      largest.values.push({ value: m.largestKb * 1024, labels: { target, pool } });
    }
  }
  return [sum, largest];
}

/** The Prometheus text exposition of some targets' counters, made by prom-client. */
export async function renderMetrics(
  targets: readonly { name: string; counters: Counters }[],
): Promise<string> {
  const { Registry } = (await import("prom-client")).default;
  const registry = new Registry();
  for (const family of families(targets)) {
    // prom-client formats whatever a metric's get() gives: names, escaped labels, numbers
    registry.registerMetric(
      {
        name: family.name,
        help: family.help,
        type: family.type,
        get: () => Promise.resolve({ ...family, aggregator: "sum" }),
      } as unknown as Parameters<typeof registry.registerMetric>[0],
    );
  }
  return await registry.metrics();
}

/**
 * Writes the metrics file atomically, as node_exporter's textfile collector wants: it never
 * reads half a file. World-readable, like the collector's other files.
 */
export async function writeMetricsFile(path: string, text: string): Promise<void> {
  const target = await Deno.lstat(path).catch(() => null);
  if (target?.isSymlink) {
    throw new Error(`Refusing to write metrics file "${path}": it is a symbolic link`);
  }
  await writeFileAtomic(path, text, 0o644);
}

/** The most pools, and signals of a pool, counted: the names come from a log. */
const MAX_DEATH_KEYS = 64;

/** Counts children's deaths on a signal (`name`: "SIGSEGV"), by pool. */
export function countChildDeaths(
  c: Counters,
  deaths: readonly { pool: string; name: string }[],
): Counters {
  if (deaths.length === 0) return c;
  const by: Record<string, Record<string, number>> = structuredClone(c.childDeaths ?? {});
  for (const { pool, name } of deaths) {
    const known = by[pool];
    if (known === undefined && Object.keys(by).length >= MAX_DEATH_KEYS) continue;
    const signals = known ?? {};
    if (signals[name] === undefined && Object.keys(signals).length >= MAX_DEATH_KEYS) continue;
    signals[name] = (signals[name] ?? 0) + 1;
    by[pool] = signals;
  }
  return { ...c, childDeaths: by };
}

/** `php_relaunch_child_deaths_total{target,pool,signal}`. */
function childDeathFamily(targets: readonly { name: string; counters: Counters }[]): Family {
  const deaths: Family = {
    name: "php_relaunch_child_deaths_total",
    help: "php-fpm children that exited on a signal, as its error log says.",
    type: "counter",
    values: [],
  };
  for (const { name: target, counters: c } of targets) {
    for (const [pool, signals] of Object.entries(c.childDeaths ?? {})) {
      for (const [signal, value] of Object.entries(signals)) {
        deaths.values.push({ value, labels: { target, pool, signal } });
      }
    }
  }
  return deaths;
}
