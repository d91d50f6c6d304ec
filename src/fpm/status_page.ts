/**
 * fpm/ owns what php-fpm says about itself: its status page, its configuration files, and the
 * evidence taken before a restart. It may import act/, probe/ and shared/.
 *
 * This module: php-fpm's status page (`pm.status_path`, `?json&full`): the pool's counters and each
 * worker's request, read over FastCGI, and what they say: overloaded or hung, early warnings, stuck
 * workers.
 */
import * as v from "valibot";
import { keyPath } from "../shared/schema.ts";
import type { FcgiGet, FcgiTarget } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { clip } from "../shared/redact.ts";

/** One worker of the full status. */
export interface Worker {
  pid: number;
  /** Idle, Running, Reading headers, Finishing... */
  state: string;
  /** Requests this worker has accepted since it started. */
  requests: number;
  /** How long the current (or last) request has taken, in milliseconds. */
  durationMs: number;
  method: string;
  uri: string;
  script: string;
  /** The last request's CPU use, in percent. */
  cpu: number;
  /** The last request's peak memory, in bytes. */
  memory: number;
  /** When the worker started (ms since the epoch; 0: not said), to tell a reused pid. */
  startedAt?: number;
}

/** The pool's counters, and its workers when the status was asked in full. */
export interface PoolStatus {
  pool: string;
  pm: string;
  acceptedConn: number;
  listenQueue: number;
  maxListenQueue: number;
  listenQueueLen: number;
  idle: number;
  active: number;
  total: number;
  maxChildrenReached: number;
  slowRequests: number;
  workers: Worker[];
}

/**
 * A pool's name as php-fpm's configurations write them (`www`, `shop.example.com`, `site_1`):
 * what is kept from a status page or a process title goes into the state file, metrics and
 * alerts, so anything longer or stranger is not a pool's name.
 */
export function isPoolName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/.test(name);
}

/** The most of a text field of the status page kept (a URI, a script's path). */
export const MAX_STATUS_TEXT = 256;
/** The most workers of one status page kept: the busiest, for the evidence. */
export const MAX_STATUS_WORKERS = 512;

// php-fpm's JSON is trusted for its shape, not for every field: a missing or odd one reads as
// 0 or "-" rather than failing the whole page. Whoever answers on its socket may not be php-fpm
// (a unix socket in www-data's /run/php can be replaced): every text is cut to a bound
const num = v.fallback(v.pipe(v.unknown(), v.transform(Number), v.number()), 0);
const str = v.fallback(
  v.pipe(v.unknown(), v.transform((x) => clip(String(x), MAX_STATUS_TEXT))),
  "-",
);

const workerSchema = v.object({
  pid: v.pipe(v.number(), v.integer(), v.minValue(1)),
  state: str,
  "start time": num,
  requests: num,
  "request duration": num,
  "request method": str,
  "request uri": str,
  script: str,
  "last request cpu": num,
  "last request memory": num,
});

const statusSchema = v.object({
  pool: v.pipe(v.string(), v.check(isPoolName, "not a pool's name")),
  "process manager": str,
  "accepted conn": v.number(),
  "listen queue": num,
  "max listen queue": num,
  "listen queue len": num,
  "idle processes": num,
  "active processes": num,
  "total processes": num,
  "max children reached": num,
  "slow requests": num,
  processes: v.optional(v.fallback(v.array(workerSchema), [])),
});

/** The status page's JSON as a {@link PoolStatus}, or a sentence saying why it is not one. */
export function parseStatus(text: string): PoolStatus | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return `not JSON (${text.trim().replace(/\s+/g, " ").slice(0, 40)}): ask for ?json`;
  }
  const r = v.safeParse(statusSchema, data);
  if (!r.success) {
    return `not php-fpm's status: ${keyPath(r.issues[0].path) || "?"}`;
  }
  const s = r.output;
  // beyond the bound, the longest-busy: what the evidence and the kill of stuck workers look at
  const all = s.processes ?? [];
  const workers = all.length <= MAX_STATUS_WORKERS
    ? all
    : all.toSorted((a, b) => b["request duration"] - a["request duration"]).slice(
      0,
      MAX_STATUS_WORKERS,
    );
  return {
    pool: s.pool,
    pm: s["process manager"],
    acceptedConn: s["accepted conn"],
    listenQueue: s["listen queue"],
    maxListenQueue: s["max listen queue"],
    listenQueueLen: s["listen queue len"],
    idle: s["idle processes"],
    active: s["active processes"],
    total: s["total processes"],
    maxChildrenReached: s["max children reached"],
    slowRequests: s["slow requests"],
    workers: workers.map((p) => ({
      pid: p.pid,
      state: p.state,
      startedAt: p["start time"] * 1000,
      requests: p.requests,
      // php-fpm reports microseconds
      durationMs: Math.round(p["request duration"] / 1000),
      method: p["request method"],
      uri: p["request uri"],
      script: p.script,
      cpu: p["last request cpu"],
      memory: p["last request memory"],
    })),
  };
}

/** The status target asked in full and as JSON, whatever query the operator wrote. */
export function fullStatusTarget(target: FcgiTarget): FcgiTarget {
  return { ...target, query: "json&full" };
}

/** Reads the full status within `timeoutMs`; a failure is a sentence, never thrown. */
export async function readStatus(
  target: FcgiTarget,
  timeoutMs: number,
  fcgiGet: FcgiGet,
): Promise<PoolStatus | string> {
  // a timer of our own, cleared when done: a quick answer leaves no timer pending behind it
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new DOMException("status page timeout", "TimeoutError")),
    timeoutMs,
  );
  try {
    const answer = await fcgiGet(fullStatusTarget(target), deadline.signal);
    if (answer.status !== 200) return `the status page answered ${answer.status}`;
    return parseStatus(answer.body);
  } catch (err) {
    if (err instanceof DOMException && err.name === "TimeoutError") {
      return `the status page did not answer within ${timeoutMs} ms`;
    }
    return `the status page failed: ${describeError(err)}`;
  } finally {
    clearTimeout(timer);
  }
}

/** A worker is busy unless it waits for a request. */
export function isBusy(w: Worker): boolean {
  return w.state !== "Idle";
}

/**
 * What two status samples about a second apart say of a pool whose heartbeat timed out:
 * `busy` when it still takes requests (an idle worker, or workers accepting new requests), `hung`
 * when the status cannot be read or nothing moved. `statusOnPool` is how many of our own status
 * requests the pool's workers served between the samples (0 with `pm.status_listen`).
 */
export function assessPool(
  first: PoolStatus | string,
  second: PoolStatus | string,
  statusOnPool: number,
): { verdict: "busy" | "hung"; why: string } {
  if (typeof second === "string") return { verdict: "hung", why: second };
  if (typeof first === "string") return { verdict: "hung", why: first };
  const served = (s: PoolStatus) => s.workers.reduce((n, w) => n + w.requests, 0);
  const accepted = served(second) - served(first) - statusOnPool;
  if (second.idle > 0) {
    return { verdict: "busy", why: `${second.idle} idle workers: the pool still takes requests` };
  }
  if (accepted > 0) {
    return {
      verdict: "busy",
      why:
        `all ${second.total} workers busy, yet ${accepted} new requests were taken within a second`,
    };
  }
  return {
    verdict: "hung",
    why:
      `all ${second.total} workers busy and none took a new request within a second (listen queue ${second.listenQueue})`,
  };
}

/** Workers on one request for longer than `limitMs`. */
export function stuckWorkers(status: PoolStatus, limitMs: number): Worker[] {
  return status.workers.filter((w) => isBusy(w) && w.durationMs >= limitMs);
}

/** The counters an early warning compares between two reads (the previous read is in the state file). */
export interface PoolCounters {
  listenQueue: number;
  maxChildrenReached: number;
  slowRequests: number;
}

/** Thresholds of the early warnings (0 turns one off). */
export interface WarnLimits {
  /** Warn when the listen queue is above this on two reads in a row. */
  listenQueue: number;
  /** Warn when `slow requests` grows by at least this between two reads. */
  slowRequests: number;
  /** Warn when `max children reached` grows. */
  maxChildren: boolean;
}

/** One early warning: what, and the numbers that show it. */
export interface PoolWarning {
  kind: "listen_queue" | "max_children" | "slow_requests";
  message: string;
}

/** What changed between two status reads that an operator should hear about before an outage. */
export function warningsOf(
  previous: PoolCounters,
  current: PoolStatus,
  limits: WarnLimits,
): PoolWarning[] {
  const out: PoolWarning[] = [];
  if (
    limits.listenQueue > 0 && previous.listenQueue > limits.listenQueue &&
    current.listenQueue > limits.listenQueue
  ) {
    out.push({
      kind: "listen_queue",
      message:
        `listen queue ${current.listenQueue} (limit ${limits.listenQueue}, max seen ${current.maxListenQueue}, backlog ${current.listenQueueLen})`,
    });
  }
  if (limits.maxChildren && current.maxChildrenReached > previous.maxChildrenReached) {
    out.push({
      kind: "max_children",
      message:
        `max children reached ${current.maxChildrenReached} times (was ${previous.maxChildrenReached}): all ${current.total} workers were busy`,
    });
  }
  const slow = current.slowRequests - previous.slowRequests;
  if (limits.slowRequests > 0 && slow >= limits.slowRequests) {
    out.push({
      kind: "slow_requests",
      message: `${slow} new slow requests (now ${current.slowRequests})`,
    });
  }
  return out;
}

/** The pool in one line, for alerts and logs. */
export function poolLine(s: PoolStatus): string {
  return `pool ${s.pool} (${s.pm}): ${s.active} active, ${s.idle} idle of ${s.total}; listen queue ${s.listenQueue}; max children reached ${s.maxChildrenReached}; slow requests ${s.slowRequests}; accepted ${s.acceptedConn}`;
}
