/**
 * Deaths by the kernel's OOM killer: php-fpm cannot tell of them (its processes are gone), and
 * they are seen only in the kernel log. After a crash this reads that log (the journal where
 * systemd runs, else /var/log/kern.log, else dmesg) for the pool's processes killed since the
 * incident began.
 */
import type { Fs, ProcessRunner } from "../shared/deps.ts";

/** One process the OOM killer ended. */
export interface OomKill {
  pid: number;
  /** Its resident memory when killed: anon + file + shmem, in KiB. */
  rssKb: number;
  /** When, as the log says (ms), or null when the line has no time we can read. */
  at: number | null;
}

/** A kill as the kernel log says it, with the memory cgroup the process was in when it says. */
export interface KernelKill extends OomKill {
  memcg: string | null;
}

/** Where the kernel log is read from, in order. */
export interface KernelLogTools {
  journalctl: string | null;
  dmesg: string | null;
}

const LOG_TIMEOUT_MS = 5000;
/** The most of kern.log read: its end, where the last minutes are. */
const KERN_LOG_TAIL = 512 * 1024;
const KERN_LOG = "/var/log/kern.log";

const KILLED =
  /(?:Out of memory|Memory cgroup out of memory): Killed process (\d+) \(([^)]+)\)(.*)$/;
/** The line before a kill: the memory cgroup the killed task was in (Linux 4.19 and later). */
const TASK_MEMCG = /oom-kill:.*[,:]task_memcg=([^,\s]+),task=[^,]*,pid=(\d+)/;

/** Whose processes a kill may be: the service (its systemd unit) and its master's pid. */
export interface PoolOwner {
  service: string;
  /** The pool's master before the failure (from its pid file, or as last seen). */
  masters: readonly number[];
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * The time at the start of a log line: ISO 8601 (journal, rsyslog, dmesg --time-format iso), or
 * syslog's traditional "Nov 27 20:03:52" (UTC assumed, in the year that puts it before `now`).
 */
function timeOf(line: string, now: number): number | null {
  const iso = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)/.exec(line);
  if (iso !== null) {
    const t = Date.parse(iso[1]!.replace(",", ".").replace(/([+-]\d\d)(\d\d)$/, "$1:$2"));
    return Number.isNaN(t) ? null : t;
  }
  const old = /^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)/.exec(line);
  const month = old === null ? -1 : MONTHS.indexOf(old[1]!);
  if (old === null || month < 0) return null;
  const at = (year: number) =>
    Date.UTC(year, month, Number(old[2]), Number(old[3]), Number(old[4]), Number(old[5]));
  const year = new Date(now).getUTCFullYear();
  // a day of slack: the host's zone may be ahead of UTC
  return at(year) > now + 86_400_000 ? at(year - 1) : at(year);
}

/**
 * The OOM kills of processes named `processName` in kernel log `text`, at or after `since` when
 * the lines carry a time (lines without one are kept: the tool was asked for recent lines). A
 * traditional syslog time is read in the year that puts it before `now`, less a day.
 */
export function parseOomKills(
  text: string,
  processName: string,
  since: number,
  now = since,
): KernelKill[] {
  const kills: KernelKill[] = [];
  const memcgs = new Map<number, string>();
  for (const line of text.split("\n")) {
    const c = TASK_MEMCG.exec(line);
    if (c !== null) memcgs.set(Number(c[2]), c[1]!);
    const m = KILLED.exec(line);
    if (m === null || m[2] !== processName) continue;
    const at = timeOf(line, now);
    if (at !== null && at < since) continue;
    const kb = (key: string) => Number(new RegExp(`${key}:(\\d+)kB`).exec(m[3]!)?.[1] ?? 0);
    const pid = Number(m[1]);
    kills.push({
      pid,
      rssKb: kb("anon-rss") + kb("file-rss") + kb("shmem-rss"),
      at,
      memcg: memcgs.get(pid) ?? null,
    });
  }
  return kills;
}

/**
 * The kills that are the pool's, not another master's of the same binary (two php8.2-fpm
 * instances): a kill in a memory cgroup of its own counts only when that cgroup is the service's
 * systemd unit, or the one the pool's master was killed in. A kill with no cgroup named, or in
 * the root one (the whole host short of memory), counts by the process name alone.
 */
export function poolKills(kills: readonly KernelKill[], owner: PoolOwner): OomKill[] {
  const masters = new Set(owner.masters);
  const masterCgroups = new Set(
    kills.filter((k) => masters.has(k.pid) && k.memcg !== null).map((k) => k.memcg),
  );
  return kills.filter((k) =>
    masters.has(k.pid) || k.memcg === null || k.memcg === "/" ||
    k.memcg.endsWith(`/${owner.service}.service`) || masterCgroups.has(k.memcg)
  ).map(({ pid, rssKb, at }) => ({ pid, rssKb, at }));
}

/**
 * The kernel log's lines since `since`: the journal's kernel messages when journalctl is there,
 * else the end of /var/log/kern.log, else dmesg. Empty when none can be read (never throws).
 */
async function kernelLog(
  since: number,
  tools: KernelLogTools,
  deps: { runner: ProcessRunner; fs: Pick<Fs, "readUntrusted"> },
): Promise<string> {
  const run = async (cmd: string, args: string[]) => {
    try {
      // the newest lines are the log's end: keep as much of it as of kern.log
      const r = await deps.runner.run(cmd, args, {
        timeoutMs: LOG_TIMEOUT_MS,
        tailBytes: KERN_LOG_TAIL,
      });
      return r.code === 0 ? r.stdout : null;
    } catch {
      return null;
    }
  };
  if (tools.journalctl !== null) {
    const from = `@${Math.floor(since / 1000)}`;
    const args = ["-k", "--since", from, "-o", "short-iso", "--no-pager", "-q"];
    const out = await run(tools.journalctl, args);
    if (out !== null) return out;
  }
  const kern = await deps.fs.readUntrusted(KERN_LOG, { maxBytes: KERN_LOG_TAIL, tail: true })
    .catch(() => "");
  if (kern !== "") return kern;
  if (tools.dmesg !== null) return await run(tools.dmesg, ["--time-format", "iso"]) ?? "";
  return "";
}

/** The OOM kills of the pool's processes since `since`, from whatever kernel log can be read. */
export async function findOomKills(
  processName: string,
  owner: PoolOwner,
  since: number,
  tools: KernelLogTools,
  deps: { runner: ProcessRunner; fs: Pick<Fs, "readUntrusted">; clock: { now(): number } },
): Promise<OomKill[]> {
  const text = await kernelLog(since, tools, deps);
  return poolKills(parseOomKills(text, processName, since, deps.clock.now()), owner);
}
