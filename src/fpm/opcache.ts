/**
 * OPcache's health, as php-relaunch's status script (nginx/php-relaunch-opcache.php) tells it
 * over FastCGI: `opcache_get_status(false)` and the settings that size the cache. OPcache's memory
 * is its master's, shared by every pool: one read per master says it all. The answer is written
 * by a PHP worker, which www-data controls, so it is bounded, validated, and only ever warns.
 */
import * as v from "valibot";
import type { FcgiGet, FcgiTarget } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { keyPath } from "../shared/schema.ts";
import { kibibytes, megabytesTenths as mb } from "../shared/memory_units.ts";

/** Where `scripts/samples.sh install` puts the status script: root's, outside every docroot. */
export const OPCACHE_SCRIPT = "/usr/local/share/php-relaunch/php-relaunch-opcache.php";

/** The largest answer read: the script prints about 1 KiB; more is not its answer. */
export const MAX_OPCACHE_ANSWER = 64 * 1024;

/** OPcache's state at one read (bytes and counts as OPcache reports them). */
export interface OpcacheStatus {
  cacheFull: boolean;
  restartPending: boolean;
  restartInProgress: boolean;
  usedBytes: number;
  freeBytes: number;
  wastedBytes: number;
  /** Wasted memory, in percent of OPcache's memory. */
  wastedPercent: number;
  internedBufferBytes: number;
  internedUsedBytes: number;
  internedFreeBytes: number;
  cachedScripts: number;
  cachedKeys: number;
  maxCachedKeys: number;
  hits: number;
  misses: number;
  /** When OPcache (its master) started, in seconds since the epoch: tells a reset of the counts. */
  startTime: number;
  oomRestarts: number;
  hashRestarts: number;
  manualRestarts: number;
  /**
   * OPcache's used memory came out negative: the worker's opcache.memory_consumption is not the
   * master's (a pool's php_admin_value, which cannot resize memory allocated at start).
   */
  iniMismatch: boolean;
  /** The settings as the worker sees them (null: unset or not a number). */
  ini: {
    memoryConsumptionMb: number | null;
    maxAcceleratedFiles: number | null;
    internedStringsBufferMb: number | null;
    maxWastedPercentage: number | null;
  };
}

/** What one read says: OPcache's state, or that it is off (and why). */
export type OpcacheRead = { on: true; status: OpcacheStatus } | { on: false; why: string };

const count = v.pipe(v.number(), v.safeInteger(), v.minValue(0));
// OPcache computes used memory from the worker's own setting: it can be below 0 (see iniMismatch)
const bytes = v.pipe(v.number(), v.safeInteger());
const iniValue = v.optional(v.union([v.string(), v.literal(false)]), false);

const statusSchema = v.object({
  "opcache_enabled": v.boolean(),
  "cache_full": v.boolean(),
  "restart_pending": v.boolean(),
  "restart_in_progress": v.boolean(),
  "memory_usage": v.object({
    "used_memory": bytes,
    "free_memory": count,
    "wasted_memory": count,
    "current_wasted_percentage": v.pipe(v.number(), v.minValue(0), v.maxValue(100)),
  }),
  "interned_strings_usage": v.optional(v.object({
    "buffer_size": count,
    "used_memory": count,
    "free_memory": count,
  })),
  "opcache_statistics": v.object({
    "num_cached_scripts": count,
    "num_cached_keys": count,
    "max_cached_keys": count,
    hits: count,
    misses: count,
    "start_time": count,
    "oom_restarts": count,
    "hash_restarts": count,
    "manual_restarts": count,
  }),
});

const answerSchema = v.object({
  loaded: v.boolean(),
  status: v.union([v.literal(false), statusSchema]),
  ini: v.object({
    "opcache.enable": iniValue,
    "opcache.memory_consumption": iniValue,
    "opcache.max_accelerated_files": iniValue,
    "opcache.interned_strings_buffer": iniValue,
    "opcache.max_wasted_percentage": iniValue,
  }),
});

function iniNumber(value: string | false): number | null {
  return typeof value === "string" && /^\d{1,9}$/.test(value.trim()) ? Number(value) : null;
}

/** The status script's answer as an {@link OpcacheRead}, or a sentence saying why it is not one. */
export function parseOpcache(text: string): OpcacheRead | string {
  if (text.length > MAX_OPCACHE_ANSWER) {
    return `an answer of ${text.length} bytes, more than the status script prints (at most ${MAX_OPCACHE_ANSWER})`;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return "not JSON: not php-relaunch's OPcache status script";
  }
  const r = v.safeParse(answerSchema, data);
  if (!r.success) return `not php-relaunch's OPcache status: ${keyPath(r.issues[0].path) || "?"}`;
  const { loaded, status: s, ini } = r.output;
  if (!loaded) return { on: false, why: "the opcache extension is not loaded" };
  if (s === false) {
    return {
      on: false,
      why: iniNumber(ini["opcache.enable"]) === 0 || ini["opcache.enable"] === ""
        ? "opcache.enable is off"
        : "opcache_get_status() said nothing (OPcache off, or opcache.restrict_api leaves the script out)",
    };
  }
  if (!s.opcache_enabled) return { on: false, why: "OPcache is disabled" };
  const m = s.memory_usage;
  const st = s.opcache_statistics;
  const interned = s.interned_strings_usage ?? { buffer_size: 0, used_memory: 0, free_memory: 0 };
  return {
    on: true,
    status: {
      cacheFull: s.cache_full,
      restartPending: s.restart_pending,
      restartInProgress: s.restart_in_progress,
      usedBytes: Math.max(0, m.used_memory),
      freeBytes: m.free_memory,
      wastedBytes: m.wasted_memory,
      wastedPercent: m.current_wasted_percentage,
      internedBufferBytes: interned.buffer_size,
      internedUsedBytes: interned.used_memory,
      internedFreeBytes: interned.free_memory,
      cachedScripts: st.num_cached_scripts,
      cachedKeys: st.num_cached_keys,
      maxCachedKeys: st.max_cached_keys,
      hits: st.hits,
      misses: st.misses,
      startTime: st.start_time,
      oomRestarts: st.oom_restarts,
      hashRestarts: st.hash_restarts,
      manualRestarts: st.manual_restarts,
      iniMismatch: m.used_memory < 0,
      ini: {
        memoryConsumptionMb: iniNumber(ini["opcache.memory_consumption"]),
        maxAcceleratedFiles: iniNumber(ini["opcache.max_accelerated_files"]),
        internedStringsBufferMb: iniNumber(ini["opcache.interned_strings_buffer"]),
        maxWastedPercentage: iniNumber(ini["opcache.max_wasted_percentage"]),
      },
    },
  };
}

/** Reads the status script at `target` within `timeoutMs`; a failure is a sentence, never thrown. */
export async function readOpcache(
  target: FcgiTarget,
  timeoutMs: number,
  fcgiGet: FcgiGet,
): Promise<OpcacheRead | string> {
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new DOMException("OPcache status timeout", "TimeoutError")),
    timeoutMs,
  );
  try {
    const answer = await fcgiGet(target, deadline.signal);
    if (answer.status === 404) {
      return `php-fpm did not find ${target.path} (404): is it installed, and readable by the pool's user?`;
    }
    if (answer.status !== 200) return `the OPcache status script answered ${answer.status}`;
    return parseOpcache(answer.body);
  } catch (err) {
    if (err instanceof DOMException && err.name === "TimeoutError") {
      return `the OPcache status script did not answer within ${timeoutMs} ms`;
    }
    return `the OPcache status script failed: ${describeError(err)}`;
  } finally {
    clearTimeout(timer);
  }
}

/** The interned-strings buffer is full below this share of it free (OPcache cannot use the last bytes). */
const INTERNED_FULL_SHARE = 0.01;
/** ...or below this many bytes free, for a small buffer. */
const INTERNED_FULL_BYTES = 16 * 1024;
/** A restart pending this long does not come: OPcache's own force_restart_timeout is 180 s. */
export const RESTART_PENDING_MS = 5 * 60_000;
/** The fewest lookups between two reads whose hit rate is compared: fewer say nothing. */
export const MIN_LOOKUPS = 100;

/** One thing OPcache's state says, the setting that mends it, and how to raise it. */
export interface OpcacheFinding {
  kind:
    | "opcache_full"
    | "opcache_restart_pending"
    | "opcache_wasted"
    | "opcache_interned"
    | "opcache_hit_rate";
  message: string;
  /** The setting to raise, or null when none would help. */
  setting: string | null;
  advice: string;
}

const pct = (ratio: number) => `${(ratio * 100).toFixed(1)}%`;

/** Twice the current value (or a usual one when it is not known), for the advice. */
function doubled(now: number | null, usual: number): string {
  return now === null || now === 0 ? `(e.g. to ${usual})` : `from ${now} to ${now * 2}`;
}

/** The setting a full cache needs: its keys (the scripts' hash table) or its memory. */
function fullSetting(s: OpcacheStatus): { setting: string; advice: string } {
  if (s.maxCachedKeys > 0 && s.cachedKeys >= s.maxCachedKeys) {
    return {
      setting: "opcache.max_accelerated_files",
      advice: `raise opcache.max_accelerated_files ${
        doubled(s.ini.maxAcceleratedFiles, 20000)
      } (php.ini: OPcache's size is set when php-fpm starts, then restart php-fpm)`,
    };
  }
  return {
    setting: "opcache.memory_consumption",
    advice: `raise opcache.memory_consumption ${
      doubled(s.ini.memoryConsumptionMb, 256)
    } (MB, in php.ini: OPcache's memory is allocated when php-fpm starts, then restart php-fpm)`,
  };
}

/** The hit rate between two reads of one OPcache, or null when too few lookups tell nothing. */
export function intervalHitRate(previous: OpcacheStatus, current: OpcacheStatus): number | null {
  // a restart of OPcache (or of php-fpm) starts its counts again: nothing to compare
  if (current.startTime !== previous.startTime || current.hits < previous.hits) return null;
  const hits = current.hits - previous.hits;
  const lookups = hits + current.misses - previous.misses;
  return lookups < MIN_LOOKUPS || current.misses < previous.misses ? null : hits / lookups;
}

/** What is wrong with OPcache now, each with the setting to raise (the report's hints too). */
export function opcacheFindings(s: OpcacheStatus): OpcacheFinding[] {
  const out: OpcacheFinding[] = [];
  const total = s.usedBytes + s.freeBytes + s.wastedBytes;
  if (s.cacheFull) {
    const keys = s.maxCachedKeys > 0 && s.cachedKeys >= s.maxCachedKeys;
    out.push({
      kind: "opcache_full",
      message: `OPcache is full (${
        keys
          ? `${s.cachedKeys} of ${s.maxCachedKeys} keys`
          : `${mb(s.usedBytes)} used, ${mb(s.freeBytes)} free, ${mb(s.wastedBytes)} wasted of ${
            mb(total)
          }`
      }, ${s.cachedScripts} scripts): scripts it has no room for are compiled on every request`,
      ...fullSetting(s),
    });
  }
  const maxWasted = s.ini.maxWastedPercentage;
  if (maxWasted !== null && s.wastedPercent > maxWasted) {
    out.push({
      kind: "opcache_wasted",
      message: `OPcache's wasted memory is ${s.wastedPercent.toFixed(1)}% (${
        mb(s.wastedBytes)
      }), above opcache.max_wasted_percentage = ${maxWasted}: old copies of changed scripts, freed only when OPcache restarts`,
      setting: "opcache.memory_consumption",
      advice: `raise opcache.memory_consumption ${
        doubled(s.ini.memoryConsumptionMb, 256)
      } so that deploys fit beside the old copies, or reload php-fpm after each deploy`,
    });
  }
  const internedFree = Math.max(
    INTERNED_FULL_BYTES,
    s.internedBufferBytes * INTERNED_FULL_SHARE,
  );
  if (s.internedBufferBytes > 0 && s.internedFreeBytes < internedFree) {
    out.push({
      kind: "opcache_interned",
      message: `OPcache's interned-strings buffer is full (${mb(s.internedUsedBytes)} used of ${
        mb(s.internedBufferBytes)
      }, ${kibibytes(s.internedFreeBytes)} free): each worker keeps new strings on its own`,
      setting: "opcache.interned_strings_buffer",
      advice: `raise opcache.interned_strings_buffer ${
        doubled(s.ini.internedStringsBufferMb, 16)
      } (MB, in php.ini, then restart php-fpm)`,
    });
  }
  return out;
}

/**
 * The early warnings of one read: what {@link opcacheFindings} says, a restart pending since
 * `pendingSince` for {@link RESTART_PENDING_MS} or more, and a hit rate that fell by
 * `hitDropPoints` percentage points or more below what it was before the previous read.
 */
export function opcacheWarnings(
  previous: OpcacheStatus | null,
  current: OpcacheStatus,
  pendingSince: number | null,
  now: number,
  hitDropPoints: number,
): OpcacheFinding[] {
  const out = opcacheFindings(current);
  if (current.restartPending && pendingSince !== null && now - pendingSince >= RESTART_PENDING_MS) {
    out.push({
      kind: "opcache_restart_pending",
      message: `OPcache has waited ${
        Math.round((now - pendingSince) / 60_000)
      } min for a restart that has not come (restart_pending since ${
        new Date(pendingSince).toISOString()
      }): until it restarts, nothing new is cached`,
      setting: "opcache.memory_consumption",
      advice: `reload php-fpm to restart OPcache now; raise opcache.memory_consumption ${
        doubled(current.ini.memoryConsumptionMb, 256)
      } so that it runs out less often`,
    });
  }
  const rate = previous === null ? null : intervalHitRate(previous, current);
  const before = previous === null || previous.hits + previous.misses === 0
    ? null
    : previous.hits / (previous.hits + previous.misses);
  if (
    hitDropPoints > 0 && rate !== null && before !== null &&
    (before - rate) * 100 >= hitDropPoints
  ) {
    const full = out.find((f) => f.kind === "opcache_full");
    out.push({
      kind: "opcache_hit_rate",
      message: `OPcache's hit rate fell to ${pct(rate)} since the last read (it was ${
        pct(before)
      }; ${current.misses - previous!.misses} misses)${
        full ? ": the cache is full" : ": new or changed scripts (a deploy?) are being compiled"
      }`,
      setting: full?.setting ?? null,
      advice: full?.advice ?? "if it stays low, see whether the cache is full or restarts",
    });
  }
  return out;
}
