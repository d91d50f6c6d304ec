/**
 * The policy's memory on disk, one JSON file per target in /var/lib/php-relaunch/, so that cron
 * runs share failure counts, restart history and giving up. Written atomically (temp file, fsync,
 * rename): a SIGKILL at any moment leaves the old state or the new one, never half of either.
 */
import * as v from "valibot";
import { parseJsonWith, timestamp } from "../shared/schema.ts";
import { describeError } from "../shared/errors.ts";
import { readRegularBytes, writeFileAtomic } from "../shared/safe_file.ts";
import { logger } from "../shared/log.ts";
import { freshState, incidentId, rearm, type TargetState } from "./recovery_policy.ts";
import type { Verdict } from "../probe/result.ts";
import type { Fs } from "../shared/deps.ts";
import { type Counters, freshCounters, LATENCY_BUCKETS } from "../record/metrics.ts";
import { type PoolState, rearmPool } from "./pool_policy.ts";
import { type CrashMemory, freshCrashMemory } from "./crash_policy.ts";

const count = v.pipe(v.number(), v.integer(), v.minValue(0));

const incidentSchema = v.object({
  // added with alerts that resolve themselves: older files' incidents get one from `since`
  id: v.optional(v.pipe(v.string(), v.regex(/^[0-9-]{1,40}$/))),
  kind: v.picklist(["php_down", "unreachable", "misconfigured", "overloaded", "upstream"]),
  since: timestamp,
  label: v.string(),
  restarts: count,
  lastAlertAt: v.nullable(timestamp),
  // added with upstream incidents: state files written before lack them
  peer: v.optional(v.pipe(v.string(), v.maxLength(200))),
  kills: v.optional(count),
});

const opcacheNumber = v.pipe(v.number(), v.minValue(0));
const opcacheSchema = v.object({
  at: timestamp,
  readAt: v.nullable(timestamp),
  status: v.nullable(v.object({
    cacheFull: v.boolean(),
    restartPending: v.boolean(),
    restartInProgress: v.boolean(),
    usedBytes: opcacheNumber,
    freeBytes: opcacheNumber,
    wastedBytes: opcacheNumber,
    wastedPercent: opcacheNumber,
    internedBufferBytes: opcacheNumber,
    internedUsedBytes: opcacheNumber,
    internedFreeBytes: opcacheNumber,
    cachedScripts: opcacheNumber,
    cachedKeys: opcacheNumber,
    maxCachedKeys: opcacheNumber,
    hits: opcacheNumber,
    misses: opcacheNumber,
    startTime: opcacheNumber,
    oomRestarts: opcacheNumber,
    hashRestarts: opcacheNumber,
    manualRestarts: opcacheNumber,
    iniMismatch: v.boolean(),
    ini: v.object({
      memoryConsumptionMb: v.nullable(opcacheNumber),
      maxAcceleratedFiles: v.nullable(opcacheNumber),
      internedStringsBufferMb: v.nullable(opcacheNumber),
      maxWastedPercentage: v.nullable(opcacheNumber),
    }),
  })),
  pendingSince: v.nullable(timestamp),
  problem: v.nullable(v.pipe(v.string(), v.maxLength(1024))),
});

const stateSchema = v.object({
  version: v.literal(1),
  failures: count,
  timeouts: count,
  failingSince: v.nullable(timestamp),
  successes: count,
  healthySince: v.nullable(timestamp),
  incident: v.nullable(incidentSchema),
  restarts: v.array(v.object({
    at: timestamp,
    ok: v.boolean(),
    label: v.string(),
    detail: v.string(),
    // added with configuration tests that do not count: older records counted
    rejected: v.optional(v.boolean()),
  })),
  givenUpAt: v.nullable(timestamp),
  graceUntil: timestamp,
  // added with the status page: state files written before lack it
  warnedAt: v.optional(v.record(v.string(), timestamp), () => ({})),
  // added with the master's watch: state files written before lack them
  masterPid: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1))), null),
  rearmWhenHealthy: v.optional(v.boolean(), false),
  // added with retry_after: a file written before gave up for good
  retryAt: v.optional(v.nullable(timestamp), null),
  retries: v.optional(count, 0),
  // added with configuration tests that do not count
  configRejectedAt: v.optional(v.nullable(timestamp), null),
  // added with `status`: state files written before lack it
  lastProbe: v.optional(
    v.nullable(v.object({
      at: timestamp,
      label: v.string(),
      verdict: v.picklist(["healthy", "php_down", "unreachable", "misconfigured"]),
      ms: v.pipe(v.number(), v.minValue(0)),
    })),
    null,
  ),
  // added with Alertmanager: state files written before lack it
  alertmanagerAt: v.optional(v.nullable(timestamp), null),
  restartingSince: v.optional(v.nullable(timestamp), null),
  // added with per-pool handling: state files written before lack it; pools that do not parse
  // start afresh, the rest of the state is kept
  pools: v.fallback(
    v.optional(
      v.record(
        v.string(),
        v.object({
          failures: count,
          timeouts: count,
          failingSince: v.nullable(timestamp),
          label: v.string(),
          kills: v.array(timestamp),
          graceUntil: timestamp,
          heldAt: v.nullable(timestamp),
          told: v.boolean(),
          overloadedAt: v.optional(v.nullable(timestamp), null),
        }),
      ),
      {},
    ),
    {},
  ),
  // counters that do not parse start again from zero, the rest of the state is kept
  counters: v.fallback(
    v.object({
      probes: v.record(v.string(), v.number()),
      latency: v.object({
        buckets: v.pipe(v.array(v.number()), v.length(LATENCY_BUCKETS.length)),
        sum: v.number(),
        count: v.number(),
      }),
      restarts: v.object({ ok: v.number(), failed: v.number() }),
      giveUps: v.number(),
      lastRestartAt: v.nullable(timestamp),
      pool: v.nullable(v.object({
        name: v.optional(v.string()),
        active: v.number(),
        idle: v.number(),
        total: v.number(),
        listenQueue: v.number(),
        maxChildrenReached: v.number(),
        slowRequests: v.number(),
        acceptedConn: v.number(),
      })),
      // added with the memory warnings: counters saved before lack it
      poolMemory: v.optional(
        v.nullable(v.object({
          sumKb: v.number(),
          largestKb: v.number(),
          byPool: v.optional(
            v.record(v.string(), v.object({ sumKb: v.number(), largestKb: v.number() })),
          ),
        })),
        null,
      ),
      // added with OPcache's watch: counters saved before lack it; one that does not parse is
      // read again at the next ask
      opcache: v.fallback(v.optional(opcacheSchema), undefined),
      // added with per-pool handling: counters saved before lack it
      pools: v.optional(
        v.record(
          v.string(),
          v.object({ up: v.boolean(), killsOk: v.number(), killsFailed: v.number() }),
        ),
        {},
      ),
      // added with child crash loops: counters saved before lack it
      childDeaths: v.optional(v.record(v.string(), v.record(v.string(), v.number()))),
      // added with upstream incidents: counters saved before lack it
      upstream: v.optional(v.object({
        pool: v.string(),
        waits: v.pipe(
          v.array(v.object({ peer: v.pipe(v.string(), v.maxLength(200)), waits: v.number() })),
          v.maxLength(5),
        ),
      })),
    }),
    () => freshCounters(),
  ),
  // added with child crash loops: state files written before lack it; one that does not parse
  // starts again from the log's end, the rest of the state is kept
  childCrashes: v.optional(v.fallback(crashMemorySchema(), freshCrashMemory)),
});

/** What a state file keeps of the children's deaths (see crash_policy.ts). */
function crashMemorySchema() {
  const crashIncident = v.object({
    id: v.pipe(v.string(), v.regex(/^[0-9-]{1,40}$/)),
    since: timestamp,
    lastAt: timestamp,
    seenAt: timestamp,
    signals: v.record(v.pipe(v.string(), v.maxLength(16)), count),
  });
  return v.object({
    file: v.nullable(v.object({
      path: v.string(),
      ino: v.nullable(count),
      offset: count,
    })),
    journal: v.nullable(v.object({
      cursor: v.nullable(v.pipe(v.string(), v.maxLength(1024))),
      sinceSec: count,
    })),
    pools: v.record(
      v.string(),
      v.object({
        recent: v.pipe(
          v.array(v.object({ at: timestamp, name: v.pipe(v.string(), v.maxLength(16)) })),
          v.maxLength(100),
        ),
        incident: v.nullable(crashIncident),
      }),
    ),
  });
}

/** The largest state file read: a target's memory takes a few KiB. */
const MAX_STATE_FILE = 1024 * 1024;

/**
 * What a target remembers between runs: the policy's state, and beside it (not inside it) the
 * metrics' counters, summed over runs. One file holds both.
 */
export interface Memory {
  state: TargetState;
  counters: Counters;
  /** The last probe, for `status`. */
  lastProbe: LastProbe | null;
  /** When the open incident was last sent to Alertmanager, which needs it repeated. */
  alertmanagerAt: number | null;
  /** When the restart under way began, or null: for `status`. */
  restartingSince: number | null;
  /** The policy's memory of each of the service's pools that failed while another answered. */
  pools: Record<string, PoolState>;
  /** Where php-fpm's error log was last read, and each pool's crashes (child crash loops). */
  childCrashes?: CrashMemory;
}

/** What the last probe found, and when. */
export interface LastProbe {
  at: number;
  /** The HTTP status or the failure kind. */
  label: string;
  verdict: Verdict;
  ms: number;
}

/** A memory of nothing. */
export function freshMemory(): Memory {
  return {
    state: freshState(),
    counters: freshCounters(),
    lastProbe: null,
    alertmanagerAt: null,
    restartingSince: null,
    pools: {},
    childCrashes: freshCrashMemory(),
  };
}

/**
 * A state file's text as a target's memory, validated whole, or the parser's reason; never the
 * file's bytes, which may be anything.
 */
export function parseState(text: string): Memory | string {
  const parsed = parseJsonWith(stateSchema, text, "not JSON");
  if (typeof parsed === "string") return parsed;
  const {
    version: _,
    counters,
    lastProbe,
    alertmanagerAt,
    restartingSince,
    pools,
    incident,
    childCrashes,
    ...rest
  } = parsed;
  const state = {
    ...rest,
    incident: incident === null
      ? null
      : { ...incident, id: incident.id ?? incidentId(incident.since) },
  };
  return {
    state,
    counters,
    lastProbe,
    alertmanagerAt,
    restartingSince,
    pools,
    ...(childCrashes === undefined ? {} : { childCrashes }),
  };
}

/** Loads and saves one target's memory. */
export interface StateStore {
  /** The saved memory; a fresh one when there is none, or it cannot be read (logged). */
  load(): Promise<Memory>;
  save(memory: Memory): Promise<void>;
}

/**
 * The targets that have a state file in `stateDir`, by name, sorted: without a configuration file
 * (the cron form names its targets after their services), these are the targets there are.
 */
export async function storedTargets(fs: Pick<Fs, "listDir">, stateDir: string): Promise<string[]> {
  return (await fs.listDir(stateDir)).filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -5))
    .sort();
}

/**
 * Forgets the stored target's giving up and restart history, and its pools' kills and holds
 * (SIGHUP, `reset`).
 */
export async function rearmStored(store: StateStore): Promise<void> {
  const memory = await store.load();
  const pools = Object.fromEntries(
    Object.entries(memory.pools).map(([name, p]) => [name, rearmPool(p)]),
  );
  await store.save({ ...memory, state: rearm(memory.state), pools });
}

/** A state store that keeps nothing: for `--once` checks that must not disturb cron runs. */
export function memoryStateStore(initial: Memory = freshMemory()): StateStore {
  let memory = initial;
  return {
    load: () => Promise.resolve(memory),
    save: (next) => {
      memory = next;
      return Promise.resolve();
    },
  };
}

/** A store backed by `path`; its folder is created (mode 0700) when missing. */
export function fileStateStore(path: string): StateStore {
  return {
    async load() {
      let bytes: Uint8Array;
      try {
        bytes = await readRegularBytes(path, MAX_STATE_FILE);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) {
          logger.warn("Cannot read state file {path} ({error}): starting afresh.", {
            path,
            error: describeError(err),
          });
        }
        return freshMemory();
      }
      const memory = parseState(new TextDecoder().decode(bytes));
      if (typeof memory !== "string") return memory;
      logger.warn("State file {path} is corrupt ({error}): starting afresh.", {
        path,
        error: `${bytes.length} bytes: ${memory}`,
      });
      return freshMemory();
    },
    async save({ state, counters, ...rest }) {
      const dir = path.slice(0, path.lastIndexOf("/")) || "/";
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      // the folder is root's (0700): a temporary file left in it by a killed run is ours
      await writeFileAtomic(
        path,
        JSON.stringify({ version: 1, ...state, counters, ...rest }) + "\n",
        0o600,
      );
    },
  };
}
