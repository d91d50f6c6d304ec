/**
 * The evidence taken just before a restart destroys it: the pool's full status, every php-fpm
 * process (from ps), the pool's key settings and the tails of its slowlog and error log. Bounded
 * in time so that recovery is barely delayed; each part that cannot be had is left empty.
 */
import type { Deps, FcgiTarget } from "../shared/deps.ts";
import { choosePool, type FpmConfig, type PoolSettings, readFpmConfig } from "./config.ts";
import { isBusy, poolLine, type PoolStatus, readStatus } from "./status.ts";
import type { Tools } from "../act/service.ts";

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

/** ps's cumulative CPU time ([[dd-]hh:]mm:ss) in seconds. */
export function parseCpuTime(text: string): number {
  const [days, rest] = text.includes("-") ? text.split("-") : ["0", text];
  const parts = (rest ?? "").split(":").map(Number);
  let seconds = 0;
  for (const p of parts) seconds = seconds * 60 + (Number.isFinite(p) ? p : 0);
  return Number(days) * 86_400 + seconds;
}

/** The processes named `name` (in the master's process group when it is known), from ps. */
export async function listProcesses(
  deps: Deps,
  tools: Tools,
  name: string,
  masterPid: number | null,
  timeoutMs: number,
): Promise<ProcessInfo[]> {
  // the title last: php-fpm names each worker's pool in it ("php-fpm: pool www")
  const args = ["-o", "pid=,ppid=,pgid=,stat=,time=,rss=,etimes=,args=", "-C", name];
  const r = await deps.runner.run(tools.ps, args, { timeoutMs }).catch(() => null);
  if (r === null) return [];
  const out: ProcessInfo[] = [];
  for (const line of r.stdout.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7) continue;
    const info: ProcessInfo = {
      pid: Number(f[0]),
      ppid: Number(f[1]),
      pgid: Number(f[2]),
      state: (f[3] ?? "?").charAt(0),
      cpuSeconds: parseCpuTime(f[4] ?? ""),
      rssKb: Number(f[5]),
      ageSeconds: Number(f[6]),
      ...poolOfTitle(f.slice(7).join(" ")),
    };
    if (!(info.pid > 0) || (masterPid !== null && info.pgid !== masterPid)) continue;
    out.push(info);
  }
  return out;
}

/** The pool in a worker's process title ("php-fpm: pool www"); none for the master. */
function poolOfTitle(title: string): { pool?: string } {
  const m = /^php-fpm: pool (\S+)/.exec(title);
  return m === null ? {} : { pool: m[1]! };
}

function lastLines(text: string): string[] {
  return text.split("\n").filter((l) => l.trim() !== "").slice(-LOG_LINES);
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
  const [s, processes, c] = await Promise.all([
    status,
    listProcesses(deps, source.tools, source.processName, source.masterPid, limitMs),
    config,
  ]);
  const poolStatus = typeof s === "string" ? null : s;
  const settings = c === null ? null : choosePool(c, poolStatus?.pool ?? null, source.listen);
  const [slowlog, errorLog] = await within(
    Promise.all([
      settings?.slowlog ? deps.fs.readTail(settings.slowlog, TAIL_BYTES) : "",
      c?.errorLog?.startsWith("/") ? deps.fs.readTail(c.errorLog, TAIL_BYTES) : "",
    ]),
    limitMs,
    ["", ""],
  );
  return {
    at: deps.clock.now(),
    status: poolStatus,
    statusError: typeof s === "string" ? s : null,
    processes,
    configFile: c === null ? null : source.fpmConfig,
    settings,
    errorLogFile: c?.errorLog ?? null,
    slowlog: lastLines(slowlog),
    errorLog: lastLines(errorLog),
    memory: deps.host.memory(),
  };
}

const mb = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MB`;

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
