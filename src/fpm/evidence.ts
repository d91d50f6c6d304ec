/**
 * The evidence taken just before a restart destroys it: the pool's full status, every php-fpm
 * process (from ps), the pool's key settings and the tails of its slowlog and error log. Bounded
 * in time so that recovery is barely delayed; each part that cannot be had is left empty.
 */
import type { Deps, FcgiTarget } from "../shared/deps.ts";
import { choosePool, type FpmConfig, poolAt, type PoolSettings, readFpmConfig } from "./config.ts";
import { isBusy, isPoolName, poolLine, type PoolStatus, readStatus } from "./status_page.ts";
import { type Proc, readProcesses } from "../act/processes.ts";
import type { Tools } from "../act/service.ts";
import { describeError } from "../shared/errors.ts";
import { clip } from "../shared/redact.ts";
import { megabytes as mb } from "../shared/memory_units.ts";
import { uidOf } from "./accounts.ts";
import type { UpstreamWait } from "../probe/result.ts";

/** One php-fpm process as ps saw it. */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** R running, S sleeping, D uninterruptible (I/O), T stopped, Z zombie. */
  state: string;
  cpuSeconds: number;
  rssKb: number;
  ageSeconds: number;
  /** The pool a worker serves, from its title ("php-fpm: pool www"); absent for the master. */
  pool?: string | undefined;
}

/** Everything known about the pool at the moment of the restart. */
export interface Evidence {
  at: number;
  status: PoolStatus | null;
  /** Why there is no status, when there is none. */
  statusError: string | null;
  processes: ProcessInfo[];
  configFile: string | null;
  settings: PoolSettings | null;
  errorLogFile: string | null;
  slowlog: string[];
  errorLog: string[];
  memory: { total: number; available: number } | null;
  /** What most stuck workers waited on, when that made the failure an upstream incident. */
  upstream?: UpstreamWait | undefined;
}

/** Where the evidence of one target is. */
export interface EvidenceSource {
  status: FcgiTarget | null;
  processName: string;
  masterPid: number | null;
  fpmConfig: string | null;
  /** The probe's socket or address as php-fpm's `listen` writes it, to find the pool. */
  listen: string | null;
  tools: Tools;
}

/** How many log lines an incident keeps of each log. */
const LOG_LINES = 40;
const TAIL_BYTES = 16 * 1024;

/**
 * The processes of `rows` that are the pool's (in the process group of `masterPid` when it is
 * known), as the evidence keeps them.
 */
export function processInfos(rows: readonly Proc[], masterPid: number | null): ProcessInfo[] {
  return rows.filter((p) => masterPid === null || p.pgid === masterPid).map((p) => ({
    pid: p.pid,
    ppid: p.ppid,
    pgid: p.pgid,
    state: p.state,
    cpuSeconds: p.cpuSeconds,
    rssKb: p.rssKb,
    ageSeconds: p.ageSeconds,
    ...poolOfTitle(p.title),
  }));
}

/**
 * The pool in a worker's process title ("php-fpm: pool www"); none for the master, nor for a
 * title that names no pool as php-fpm names them (a worker may rewrite its own title).
 */
function poolOfTitle(title: string): { pool?: string } {
  const m = /^php-fpm: pool (\S+)$/.exec(title.trimEnd());
  return m === null || !isPoolName(m[1]!) ? {} : { pool: m[1]! };
}

/** The most of one log line kept: a line is a record, not a file. */
const MAX_LINE = 500;

function lastLines(text: string): string[] {
  return text.split("\n").filter((l) => l.trim() !== "").slice(-LOG_LINES).map((l) =>
    clip(l, MAX_LINE)
  );
}

/**
 * The end of one of the pool's logs, read only as a regular file of root's or the pool user's
 * (`owners`), never through a link: a site's own log folder is its user's, who could point a
 * link at a root-only file and have its lines mailed. Why it was not read is its one line.
 */
async function logTail(deps: Deps, path: string, owners: readonly number[]): Promise<string> {
  try {
    return await deps.fs.readUntrusted(path, { maxBytes: TAIL_BYTES, tail: true, owners });
  } catch (err) {
    return err instanceof Deno.errors.NotFound ? "" : `(not read: ${describeError(err)})`;
  }
}

/** Waits for `work` at most `ms` of real time (a safety bound, like a probe's); then `fallback`. */
function within<T>(work: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<T>((resolve) => {
      timer = setTimeout(() => resolve(fallback), ms);
    }),
  ]);
}

/**
 * The status page's answer, unless php-fpm's configuration says its address is another pool's:
 * then whoever answered there is not that pool (a unix socket in www-data's /run/php can be
 * replaced), and its workers are nobody's to kill.
 */
function statusOfItsPool(
  s: PoolStatus,
  config: FpmConfig | null,
  source: EvidenceSource,
): [PoolStatus | null, string | null] {
  const pool = config === null || source.status === null
    ? null
    : poolAt(config, source.status.address);
  if (pool === null || pool === s.pool) return [s, null];
  return [
    null,
    `the status page names pool "${s.pool}", but its address is pool ${pool}'s in ${source.fpmConfig}: not that pool's answer`,
  ];
}

/**
 * Captures the evidence within about `limitMs`. `known` is a status read a moment ago (by the
 * hang check), used instead of asking again when given.
 */
export async function captureEvidence(
  source: EvidenceSource,
  deps: Deps,
  limitMs: number,
  known: PoolStatus | null = null,
): Promise<Evidence> {
  const status: Promise<PoolStatus | string> = known !== null
    ? Promise.resolve(known)
    : source.status === null
    ? Promise.resolve("not read: set status_url (php-fpm's pm.status_listen) to see the workers")
    : readStatus(source.status, limitMs, deps.fcgiGet);
  const config: Promise<FpmConfig | null> = source.fpmConfig === null
    ? Promise.resolve(null)
    : within(readFpmConfig(deps.fs, source.fpmConfig), limitMs, null);
  const [s, rows, c] = await Promise.all([
    status,
    readProcesses(deps.runner, source.tools.ps, source.processName, limitMs, "all"),
    config,
  ]);
  const processes = processInfos(rows ?? [], source.masterPid);
  const [poolStatus, statusError] = typeof s === "string"
    ? [null, s]
    : statusOfItsPool(s, c, source);
  const settings = c === null ? null : choosePool(c, poolStatus?.pool ?? null, source.listen);
  const poolUid = settings?.user ? await uidOf(deps.fs, settings.user) : null;
  const owners = poolUid === null ? [0] : [0, poolUid];
  const [slowlog, errorLog] = await within(
    Promise.all([
      settings?.slowlog ? logTail(deps, settings.slowlog, owners) : "",
      c?.errorLog?.startsWith("/") ? logTail(deps, c.errorLog, owners) : "",
    ]),
    limitMs,
    ["", ""],
  );
  return {
    at: deps.clock.now(),
    status: poolStatus,
    statusError,
    processes,
    configFile: c === null ? null : source.fpmConfig,
    settings,
    errorLogFile: c?.errorLog ?? null,
    slowlog: lastLines(slowlog),
    errorLog: lastLines(errorLog),
    memory: deps.host.memory(),
  };
}

/** The evidence in a few readable lines, for the alert. */
export function evidenceLines(e: Evidence): string[] {
  const lines: string[] = [];
  if (e.status !== null) {
    lines.push(`Pool: ${poolLine(e.status)}`);
    const busy = e.status.workers.filter(isBusy).sort((a, b) => b.durationMs - a.durationMs);
    for (const w of busy.slice(0, 10)) {
      lines.push(
        `  worker ${w.pid} ${w.state} for ${
          (w.durationMs / 1000).toFixed(1)
        } s: ${w.method} ${w.uri} (${w.script})`,
      );
    }
  } else lines.push(`Pool status: ${e.statusError ?? "unknown"}`);
  if (e.upstream !== undefined) {
    const up = e.upstream;
    lines.push(
      `Upstream: ${up.blocked} of ${up.of} workers blocked on ${up.peer}, the longest for ${
        (up.forMs / 1000).toFixed(1)
      } s`,
    );
  }
  if (e.processes.length > 0) {
    const states = new Map<string, number>();
    for (const p of e.processes) states.set(p.state, (states.get(p.state) ?? 0) + 1);
    const rss = e.processes.reduce((n, p) => n + p.rssKb * 1024, 0);
    lines.push(
      `Processes: ${e.processes.length} (${[...states].map(([s, n]) => `${n} ${s}`).join(", ")}), ${
        mb(rss)
      } resident in all`,
    );
  }
  if (e.settings !== null) {
    const s = e.settings;
    lines.push(
      `Settings (${e.configFile}): pm ${s.pm ?? "?"}, pm.max_children ${
        s.maxChildren ?? "?"
      }, request_terminate_timeout ${
        s.requestTerminateTimeout ?? "0 (off)"
      }, request_slowlog_timeout ${s.requestSlowlogTimeout ?? "0 (off)"}, listen ${
        s.listen ?? "?"
      }`,
    );
  }
  if (e.memory !== null) {
    lines.push(`Memory: ${mb(e.memory.available)} available of ${mb(e.memory.total)}`);
  }
  if (e.slowlog.length > 0) {
    lines.push("Slowlog, last lines:", ...e.slowlog.slice(-12).map((l) => `  ${l}`));
  }
  if (e.errorLog.length > 0) {
    lines.push("php-fpm error log, last lines:", ...e.errorLog.slice(-8).map((l) => `  ${l}`));
  }
  return lines;
}
