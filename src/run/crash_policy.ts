/**
 * When children that crash make an incident: pure decisions from the deaths php-fpm logged and
 * the clock. Past `warn_child_crashes` (N crashes of one pool within a window, by the log's own
 * times) one incident of kind `child_crashes` opens for that pool; it counts the crashes that
 * follow, and resolves once none was seen for a quiet period. Nothing here restarts anything: the
 * master respawns its children, and a restart would not mend the page that crashes them.
 */
import { type ChildDeath, isCrash } from "../fpm/child_deaths.ts";
import type { FileCursor, JournalCursor } from "../fpm/log_follow.ts";
import { incidentId } from "./recovery_policy.ts";

/** `warn_child_crashes`: this many crashes of one pool within `windowMs` (count 0: off). */
export interface CrashLimits {
  count: number;
  windowMs: number;
}

/** A pool's crash loop, from its first crash to its quiet end. */
export interface CrashIncident {
  id: string;
  /** The first crash of the window that opened it (the log's time). */
  since: number;
  /** The last crash (the log's time). */
  lastAt: number;
  /** When the last crash was read (our clock): the quiet period runs from here. */
  seenAt: number;
  /** Crashes by signal name ("SIGSEGV"). */
  signals: Record<string, number>;
}

/** A pool's recent crashes, and its open incident. */
export interface PoolCrashes {
  /** The crashes within the window before an incident opens, oldest first. */
  recent: { at: number; name: string }[];
  incident: CrashIncident | null;
}

/** What a target remembers of its children's deaths between steps and runs. */
export interface CrashMemory {
  /** Where the reading of php-fpm's error log file stopped. */
  file: FileCursor | null;
  /** Where the reading of the journal stopped, where php-fpm logs to syslog. */
  journal: JournalCursor | null;
  pools: Record<string, PoolCrashes>;
}

/** Nothing read yet. */
export function freshCrashMemory(): CrashMemory {
  return { file: null, journal: null, pools: {} };
}

/**
 * The most pools remembered: a pool's name in the log is php-fpm's, but bounded all the same, so
 * that their recent crashes (at most warn_child_crashes' 100 each) keep the state file small.
 */
export const MAX_CRASH_POOLS = 32;
/** The shortest quiet period that ends an incident: a page requested now and then still crashes. */
export const MIN_QUIET_MS = 5 * 60_000;

/** The quiet period after which a pool's crash incident resolves. */
export function quietMs(limits: CrashLimits): number {
  return Math.max(MIN_QUIET_MS, limits.windowMs);
}

/** What one look at the deaths decided. */
export interface CrashDecision {
  pools: Record<string, PoolCrashes>;
  /** Incidents opened now, with the crashes that crossed the threshold. */
  opened: { pool: string; incident: CrashIncident; crashes: { at: number; name: string }[] }[];
  /** Incidents that ended now, quiet long enough. */
  resolved: { pool: string; incident: CrashIncident }[];
}

const total = (i: CrashIncident) => Object.values(i.signals).reduce((a, b) => a + b, 0);

/** How many crashes an incident counted. */
export { total as crashCount };

/**
 * Adds `deaths` (new lines of the log) to `pools` at `now`: the crashes count toward their pool's
 * threshold or its open incident; an incident quiet for {@link quietMs} resolves.
 */
export function judgeCrashes(
  pools: Readonly<Record<string, PoolCrashes>>,
  deaths: readonly ChildDeath[],
  now: number,
  limits: CrashLimits,
): CrashDecision {
  const next: Record<string, PoolCrashes> = structuredClone(pools) as Record<string, PoolCrashes>;
  const opened: CrashDecision["opened"] = [];
  for (const d of deaths) {
    if (!isCrash(d.signal) || limits.count === 0) continue;
    const p = next[d.pool] ?? { recent: [], incident: null };
    next[d.pool] = p;
    if (p.incident !== null) {
      p.incident.signals[d.name] = (p.incident.signals[d.name] ?? 0) + 1;
      p.incident.lastAt = Math.max(p.incident.lastAt, d.at);
      p.incident.seenAt = now;
      continue;
    }
    // by the log's times: a burst read late is still a burst
    p.recent = [...p.recent, { at: d.at, name: d.name }]
      .filter((r) => r.at > d.at - limits.windowMs)
      .slice(-limits.count);
    if (p.recent.length < limits.count) continue;
    const signals: Record<string, number> = {};
    for (const r of p.recent) signals[r.name] = (signals[r.name] ?? 0) + 1;
    const since = p.recent[0]!.at;
    p.incident = {
      id: uniqueId(next, since),
      since,
      lastAt: d.at,
      seenAt: now,
      signals,
    };
    opened.push({ pool: d.pool, incident: p.incident, crashes: p.recent });
    p.recent = [];
  }
  const resolved: CrashDecision["resolved"] = [];
  for (const [pool, p] of Object.entries(next)) {
    if (p.incident !== null && now - p.incident.seenAt >= quietMs(limits)) {
      resolved.push({ pool, incident: p.incident });
      p.incident = null;
    }
    // crashes too old to count toward the threshold: forgotten
    const latest = p.recent.at(-1)?.at;
    if (p.incident === null && (latest === undefined || now - latest > quietMs(limits))) {
      delete next[pool];
    }
  }
  return { pools: bounded(next), opened, resolved };
}

/** An id no other open incident of the target's pools has (two pools may begin together). */
function uniqueId(pools: Record<string, PoolCrashes>, since: number): string {
  const taken = new Set(Object.values(pools).flatMap((p) => p.incident ? [p.incident.id] : []));
  let at = since;
  while (taken.has(incidentId(at))) at++;
  return incidentId(at);
}

/** At most {@link MAX_CRASH_POOLS} pools: those with an open incident, then the latest. */
function bounded(pools: Record<string, PoolCrashes>): Record<string, PoolCrashes> {
  const entries = Object.entries(pools);
  if (entries.length <= MAX_CRASH_POOLS) return pools;
  const latest = (p: PoolCrashes) =>
    p.incident !== null ? Infinity : p.recent.at(-1)?.at ?? -Infinity;
  return Object.fromEntries(
    entries.sort((a, b) => latest(b[1]) - latest(a[1])).slice(0, MAX_CRASH_POOLS),
  );
}
