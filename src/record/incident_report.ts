/**
 * `php-relaunch report`: what the incident log says, for tuning php-fpm. Counts by cause and by
 * hour, the scripts found in stuck workers and in the slowlog, and tuning hints that each name the
 * setting and the measured reason. Pure: incidents in, a report out.
 */
import { isOff, type PoolSettings } from "../fpm/config.ts";
import { isBusy } from "../fpm/status_page.ts";
import type { IncidentRecord } from "./incidents.ts";
import { opcacheFindings } from "../fpm/opcache.ts";
import type { OpcacheCounters } from "./metrics.ts";
import { escapeControl } from "../shared/redact.ts";
import { megabytes, megabytesOfKb } from "../shared/memory_units.ts";

/** A script and how often (in how many incidents) it was seen, with the longest request. */
export interface ScriptCount {
  script: string;
  incidents: number;
  longestSeconds: number;
}

/** One tuning hint: the setting, what to do, and the measured reason. */
export interface Hint {
  setting: string;
  advice: string;
}

/** The whole report, also its JSON form. */
export interface Report {
  since: string;
  until: string;
  incidents: number;
  restartsFailed: number;
  /** Incidents by the pool that failed, where the record names it. */
  byPool: Record<string, number>;
  /** Incidents in which the OOM killer ended php-fpm processes. */
  oomDeaths: number;
  /**
   * The workers' resident memory in the incidents' evidence, by `target/pool` (each worker's pool
   * from its title, else the incident's): the largest and the average, in KiB.
   */
  memoryByPool: Record<string, { largestKb: number; averageKb: number; workers: number }>;
  /** Failed starts by the first error of php-fpm's configuration test. */
  cannotStart: Record<string, number>;
  /** Upstream incidents by the peer their workers waited on (restarts held back). */
  upstreams: Record<string, number>;
  byCause: Record<string, number>;
  /** Incidents per hour of the day (0-23, the host's local time). */
  byHour: number[];
  byRung: Record<string, number>;
  stuckScripts: ScriptCount[];
  slowlogScripts: ScriptCount[];
  hints: Hint[];
  /** Lines of the log that could not be read (cut by a crash, foreign). */
  skipped: number;
  /** Children that crashed in a loop (incidents of kind child_crashes), by `target/pool`. */
  childCrashes?: Record<string, ChildCrashSummary>;
}

/** A pool's crash loops in the report: how many, their crashes by signal, the pages lost. */
export interface ChildCrashSummary {
  incidents: number;
  /** Crashes by signal name, over its incidents. */
  signals: Record<string, number>;
  /** The requests nginx lost at the crashes, as its log wrote them, most often first. */
  lost: { request: string; count: number }[];
  /** The newest core's top frames, where one was found. */
  frames: string[];
  lastAt: number;
}

function causeOf(i: IncidentRecord): string {
  return i.pool === null ? i.label : `${i.label}, pool ${i.pool}`;
}

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

function scripts(
  incidents: readonly IncidentRecord[],
  pick: (i: IncidentRecord) => { script: string; seconds: number }[],
): ScriptCount[] {
  const seen = new Map<string, ScriptCount>();
  for (const incident of incidents) {
    const here = new Map<string, number>();
    for (const { script, seconds } of pick(incident)) {
      here.set(script, Math.max(here.get(script) ?? 0, seconds));
    }
    for (const [script, seconds] of here) {
      const s = seen.get(script) ?? { script, incidents: 0, longestSeconds: 0 };
      s.incidents++;
      s.longestSeconds = Math.max(s.longestSeconds, seconds);
      seen.set(script, s);
    }
  }
  return [...seen.values()].sort((a, b) =>
    b.incidents - a.incidents || b.longestSeconds - a.longestSeconds
  );
}

/** The scripts the slowlog names (php-fpm writes `script_filename = /path` per entry). */
function slowlogScripts(i: IncidentRecord): { script: string; seconds: number }[] {
  return i.evidence.slowlog.flatMap((line) => {
    const m = /script_filename = (\S+)/.exec(line);
    return m ? [{ script: m[1]!, seconds: 0 }] : [];
  });
}

function stuckScripts(i: IncidentRecord): { script: string; seconds: number }[] {
  return (i.evidence.status?.workers ?? []).filter(isBusy).map((w) => ({
    script: w.script !== "-" ? w.script : w.uri,
    seconds: Math.round(w.durationMs / 1000),
  }));
}

/** Every worker was busy: the pool had reached pm.max_children. */
function atMaxChildren(i: IncidentRecord): boolean {
  const s = i.evidence.status;
  if (s === null) return false;
  const max = i.evidence.settings?.maxChildren ?? s.total;
  return s.idle === 0 && s.active >= max;
}

/**
 * pm.max_children, when most incidents found every worker busy: how far memory lets it grow, or
 * why it cannot, and the script to look at first.
 */
function maxChildrenHint(
  incidents: readonly IncidentRecord[],
  settings: PoolSettings | null,
  stuck: ScriptCount[],
): Hint | null {
  const n = incidents.length;
  const latest = incidents[n - 1];
  const full = incidents.filter(atMaxChildren);
  if (latest === undefined || full.length === 0 || full.length * 2 < n) return null;
  const workers = full.flatMap((i) => i.evidence.processes.filter((p) => p.pid !== p.pgid));
  const avgRss = workers.length === 0
    ? 0
    : workers.reduce((sum, p) => sum + p.rssKb * 1024, 0) / workers.length;
  const available = [...incidents].reverse().find((i) => i.evidence.memory !== null)?.evidence
    .memory?.available ?? null;
  const now = settings?.maxChildren ?? latest.evidence.status?.total ?? null;
  let advice = `max children reached in ${full.length} of ${n} incidents`;
  if (avgRss > 0 && available !== null && now !== null) {
    // half the memory available at the time, so the host keeps room for everything else;
    // and no more than four times as many at once, since CPU and the database share the load
    const fits = now + Math.floor((available * 0.5) / avgRss);
    const step = Math.min(fits, now * 4);
    advice += `; average worker RSS ${megabytes(avgRss)} and ${
      megabytes(available)
    } available: pm.max_children could go from ${now} to ${step}`;
    if (fits > step) advice += ` (memory would allow ${fits}; raise it in steps)`;
    else if (fits <= now) {
      advice = `max children reached in ${full.length} of ${n} incidents, but ${
        megabytes(available)
      } available leave no room for more ${
        megabytes(avgRss)
      } workers: lower the memory per request or add memory`;
    }
  } else {
    advice += now !== null ? `: raise pm.max_children (now ${now})` : ": raise pm.max_children";
  }
  if (stuck[0] !== undefined && stuck[0].incidents * 2 >= n) {
    advice += `, but first see why ${stuck[0].script} runs so long`;
  }
  return { setting: "pm.max_children", advice };
}

function hintsOf(incidents: readonly IncidentRecord[], stuck: ScriptCount[]): Hint[] {
  const hints: Hint[] = [];
  const n = incidents.length;
  const latest = incidents[n - 1];
  if (latest === undefined) return hints;
  const settings = [...incidents].reverse().find((i) => i.evidence.settings !== null)?.evidence
    .settings ?? null;

  const full = maxChildrenHint(incidents, settings, stuck);
  if (full !== null) hints.push(full);

  const over = overcommitHint(latest);
  if (over !== null) hints.push(over);

  const oom = incidents.filter((i) => (i.oomKills?.length ?? 0) > 0);
  if (oom.length > 0) {
    const largest = Math.max(...oom.flatMap((i) => i.oomKills!.map((k) => k.rssKb)));
    hints.push({
      setting: "memory",
      advice:
        `the kernel's OOM killer ended php-fpm processes in ${oom.length} of ${n} incidents (the largest ${
          megabytesOfKb(largest)
        } resident): lower pm.max_children or PHP's memory_limit until pm.max_children x the largest worker fits in the host's memory, or give the host more`,
    });
  }

  const terminateOff = settings === null || isOff(settings.requestTerminateTimeout);
  const long = stuck.filter((s) => s.longestSeconds >= 30);
  if (long[0] !== undefined && terminateOff) {
    const s = long[0];
    hints.push({
      setting: "request_terminate_timeout",
      advice:
        `workers stuck up to ${s.longestSeconds} s in ${s.script} (${s.incidents} of ${n} incidents): set request_terminate_timeout (e.g. ${
          Math.max(30, Math.min(300, Math.round(s.longestSeconds / 2)))
        }s) so that php-fpm ends such requests itself`,
    });
  }

  if (settings !== null && isOff(settings.requestSlowlogTimeout)) {
    hints.push({
      setting: "request_slowlog_timeout",
      advice:
        "request_slowlog_timeout is off: set it (e.g. 5s) with slowlog, so that each incident names the slow scripts and their PHP stack",
    });
  }

  const blind = incidents.filter((i) => i.evidence.status === null).length;
  if (blind > 0) {
    hints.push({
      setting: "pm.status_listen",
      advice:
        `${blind} of ${n} incidents have no pool status: set pm.status_path = /status and pm.status_listen = 127.0.0.1:909 in the pool, and status_url = "fcgi://127.0.0.1:909/status" in php-relaunch, so that incidents show each worker's request`,
    });
  }

  const segfaults =
    incidents.filter((i) =>
      i.evidence.errorLog.some((l) => /exited on signal (11|6|7)\b|SIGSEGV/.test(l))
    ).length;
  if (segfaults > 0) {
    hints.push({
      setting: "php extensions",
      advice:
        `workers crashed (SIGSEGV/SIGABRT in the error log) in ${segfaults} of ${n} incidents: a PHP extension or opcache is failing; see php-fpm's error log and the core dumps`,
    });
  }

  // SIGUSR2 keeps the listening socket: requests queued in its backlog take the new workers
  const reloadInVain = incidents.filter((i) =>
    i.restart !== null && i.restart.rung !== "reload" &&
    i.restart.steps.some((step) => /^reload: .*\(still failing\)$/.test(step))
  ).length;
  if (reloadInVain > 0) {
    hints.push({
      setting: "rungs",
      advice:
        `the reload rung did not bring the heartbeat back in ${reloadInVain} of ${n} incidents, and each waited start_timeout before the next rung: a reload keeps the listening socket, so requests queued in its backlog take the new workers; put "restart" before "reload" in rungs (a restart closes the socket and drops them), or lower start_timeout`,
    });
  }

  const upstream = upstreamHint(incidents);
  if (upstream !== null) hints.push(upstream);

  const dState = incidents.filter((i) => i.evidence.processes.some((p) => p.state === "D")).length;
  if (dState > 0) {
    hints.push({
      setting: "storage",
      advice:
        `php-fpm processes were waiting on I/O (state D) in ${dState} of ${n} incidents: a slow disk or network file system holds them, and no restart can end that`,
    });
  }
  return hints;
}

/**
 * The peer most upstream incidents' workers waited on: no php-fpm setting cures it, but timeouts
 * in the scripts' clients turn a pool that hangs into requests that fail fast.
 */
function upstreamHint(incidents: readonly IncidentRecord[]): Hint | null {
  const waits = incidents.flatMap((i) => i.evidence.upstream ? [i.evidence.upstream.peer] : []);
  if (waits.length === 0) return null;
  const by = new Map<string, number>();
  for (const peer of waits) by.set(peer, (by.get(peer) ?? 0) + 1);
  const [peer, n] = [...by].sort((a, b) => b[1] - a[1])[0]!;
  return {
    setting: "upstream",
    advice:
      `the workers were blocked on ${peer} in ${n} of ${incidents.length} incidents, where restarting php-fpm cannot help: look at ${peer} itself, and give the scripts' clients timeouts (default_socket_timeout, mysqli.connect_timeout / MYSQLI_OPT_READ_TIMEOUT, CURLOPT_TIMEOUT) and the pool a request_terminate_timeout, so that a silent upstream fails requests instead of filling the pool`,
  };
}

/**
 * pm.max_children workers as large as the largest one seen would not fit in the host's memory:
 * the pool can grow into the OOM killer.
 */
function overcommitHint(i: IncidentRecord): Hint | null {
  const children = i.evidence.settings?.maxChildren ?? null;
  const total = i.evidence.memory?.total ?? null;
  const workers = i.evidence.processes.filter((p) => p.ppid !== 1);
  if (children === null || total === null || workers.length === 0) return null;
  const largestKb = Math.max(...workers.map((p) => p.rssKb));
  const needed = children * largestKb * 1024;
  if (needed <= total) return null;
  return {
    setting: "pm.max_children",
    advice: `${children} workers x the largest seen (${megabytes(largestKb * 1024)}) is ${
      megabytes(needed)
    }, more than the host's ${megabytes(total)}: at most ${
      Math.max(1, Math.floor((total * 0.8) / (largestKb * 1024)))
    } fit with room for the rest, or lower PHP's memory_limit`,
  };
}

/**
 * OPcache's hints, from each target's last read (kept in its state file): an OPcache that is
 * full, wastes more than it may or has no room for interned strings names the setting to raise.
 * It is no incident (the site slows down, it does not fail), so its hints stand without one.
 */
export function opcacheHints(
  reads: readonly { target: string; opcache: OpcacheCounters | undefined }[],
): Hint[] {
  const hints: Hint[] = [];
  for (const { target, opcache } of reads) {
    const s = opcache?.status;
    if (s === undefined || s === null || opcache?.readAt === null) continue;
    const at = new Date(opcache!.readAt!).toISOString();
    for (const f of opcacheFindings(s)) {
      if (f.setting === null) continue;
      hints.push({ setting: f.setting, advice: `${target} at ${at}: ${f.message}: ${f.advice}` });
    }
    if (s.iniMismatch) {
      hints.push({
        setting: "opcache.memory_consumption",
        advice:
          `${target}: a pool sets opcache.memory_consumption (php_admin_value), which cannot resize OPcache's memory: the master allocates it from php.ini when php-fpm starts; set it there`,
      });
    }
  }
  return hints;
}

/** The report on `incidents` between `since` and `until`. */
export function buildReport(
  records: readonly IncidentRecord[],
  since: number,
  until: number,
  skipped = 0,
): Report {
  // a crash loop restarts nothing: it has its own section, and the restarts' figures stay theirs
  const incidents = records.filter((i) => i.kind !== "child_crashes");
  const crashes = childCrashesOf(records);
  const byCause: Record<string, number> = {};
  const byRung: Record<string, number> = {};
  const byHour = Array.from({ length: 24 }, () => 0);
  for (const i of incidents) {
    count(byCause, causeOf(i));
    count(byRung, i.restart === null ? "none" : i.restart.ok ? i.restart.rung ?? "?" : "failed");
    byHour[new Date(i.at).getHours()]!++;
  }
  const stuck = scripts(incidents, stuckScripts);
  return {
    since: new Date(since).toISOString(),
    until: new Date(until).toISOString(),
    incidents: incidents.length,
    restartsFailed: incidents.filter((i) => i.restart !== null && !i.restart.ok).length,
    cannotStart: cannotStartOf(incidents),
    upstreams: incidents.reduce((by, i) => {
      if (i.evidence.upstream !== undefined) count(by, i.evidence.upstream.peer);
      return by;
    }, {} as Record<string, number>),
    oomDeaths: incidents.filter((i) => (i.oomKills?.length ?? 0) > 0).length,
    memoryByPool: memoryByPool(incidents),
    byPool: incidents.reduce((by, i) => {
      if (i.poolName !== undefined) count(by, `${i.target}/${i.poolName}`);
      return by;
    }, {} as Record<string, number>),
    byCause,
    byHour,
    byRung,
    stuckScripts: stuck,
    slowlogScripts: scripts(incidents, slowlogScripts),
    hints: hintsOf(incidents, stuck),
    skipped,
    ...(Object.keys(crashes).length === 0 ? {} : { childCrashes: crashes }),
  };
}

/**
 * The crash loops of `records` by `target/pool`: each incident counted once, by its last record
 * (written when it resolved, with every crash), with the pages and frames its first one found.
 */
function childCrashesOf(records: readonly IncidentRecord[]): Record<string, ChildCrashSummary> {
  const byIncident = new Map<string, IncidentRecord[]>();
  for (const r of records) {
    if (r.kind !== "child_crashes" || r.childCrashes === undefined) continue;
    const key = `${r.target}/${r.poolName ?? "-"}/${r.incident ?? r.at}`;
    byIncident.set(key, [...(byIncident.get(key) ?? []), r]);
  }
  const out: Record<string, ChildCrashSummary> = {};
  for (const rs of byIncident.values()) {
    const first = rs[0]!;
    const last = rs.at(-1)!.childCrashes!;
    const key = `${first.target}/${first.poolName ?? "-"}`;
    const s = out[key] ?? { incidents: 0, signals: {}, lost: [], frames: [], lastAt: 0 };
    s.incidents++;
    for (const [name, n] of Object.entries(last.signals)) {
      s.signals[name] = (s.signals[name] ?? 0) + n;
    }
    const lost = new Map(s.lost.map((l) => [l.request, l.count]));
    for (const l of first.childCrashes!.lost) {
      lost.set(l.request, (lost.get(l.request) ?? 0) + l.count);
    }
    s.lost = [...lost].map(([request, count]) => ({ request, count }))
      .sort((a, b) => b.count - a.count).slice(0, 10);
    if (last.lastAt >= s.lastAt) {
      s.lastAt = last.lastAt;
      if (first.childCrashes!.frames.length > 0) s.frames = first.childCrashes!.frames;
    }
    out[key] = s;
  }
  return out;
}

/** The report's section on children that crash in a loop, for people. */
function childCrashLines(r: Report): string[] {
  const pools = Object.entries(r.childCrashes ?? {});
  if (pools.length === 0) return [];
  const lines = ["", "Children that crashed in a loop (php-fpm's error log; no restart made):"];
  for (const [pool, c] of pools) {
    const signals = Object.entries(c.signals).sort((a, b) => b[1] - a[1])
      .map(([name, n]) => `${name} ${n}`).join(", ");
    lines.push(
      `  ${pool}: ${c.incidents} incidents, ${signals}; the last crash at ${
        new Date(c.lastAt).toISOString()
      }`,
    );
    if (c.lost.length > 0) {
      lines.push("    requests nginx lost at the crashes (as its error log says):");
      for (const l of c.lost) lines.push(`    ${String(l.count).padStart(6)}  ${l.request}`);
    }
    if (c.frames.length > 0) {
      lines.push("    newest core dump:", ...c.frames.map((f) => `      ${f}`));
    }
  }
  return lines;
}

/** The workers' memory in the evidence, by `target/pool`. */
function memoryByPool(incidents: readonly IncidentRecord[]): Report["memoryByPool"] {
  const seen = new Map<string, { largestKb: number; sumKb: number; workers: number }>();
  for (const i of incidents) {
    for (const p of i.evidence.processes.filter((p) => p.ppid !== 1)) {
      const key = `${i.target}/${p.pool ?? i.poolName ?? "-"}`;
      const was = seen.get(key) ?? { largestKb: 0, sumKb: 0, workers: 0 };
      seen.set(key, {
        largestKb: Math.max(was.largestKb, p.rssKb),
        sumKb: was.sumKb + p.rssKb,
        workers: was.workers + 1,
      });
    }
  }
  return Object.fromEntries(
    [...seen].map(([key, m]) => [key, {
      largestKb: m.largestKb,
      averageKb: Math.round(m.sumKb / m.workers),
      workers: m.workers,
    }]),
  );
}

/** Why starts failed, by php-fpm's first configuration error, as incidents recorded it. */
function cannotStartOf(incidents: readonly IncidentRecord[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of incidents) {
    const first = i.cannotStart?.[0];
    if (first !== undefined) count(out, first);
  }
  return out;
}

function table(map: Record<string, number>): string[] {
  return Object.entries(map).sort((a, b) => b[1] - a[1]).map(([k, v]) =>
    `  ${String(v).padStart(4)}  ${k}`
  );
}

/** The report for people. */
export function renderReport(r: Report): string {
  const lines = [
    `php-relaunch report: ${r.incidents} incidents from ${r.since} to ${r.until}` +
    (r.skipped > 0 ? ` (${r.skipped} unreadable lines skipped)` : ""),
  ];
  if (r.incidents === 0) {
    const crashes = childCrashLines(r);
    // OPcache's hints need no incident
    const hints = r.hints.length === 0
      ? []
      : ["", "Tuning hints:", ...r.hints.map((h) => `  - ${h.setting}: ${h.advice}`)];
    if (crashes.length + hints.length === 0) {
      return lines.map(escapeControl).join("\n") + "\nNothing to report.\n";
    }
    return [...lines, ...crashes, ...hints].map(escapeControl).join("\n") + "\n";
  }
  lines.push("", "By cause:", ...table(r.byCause));
  lines.push("", "Recovered by:", ...table(r.byRung));
  if (Object.keys(r.byPool).length > 0) lines.push("", "By pool:", ...table(r.byPool));
  if (r.oomDeaths > 0) {
    lines.push("", `Killed by the kernel's OOM killer: ${r.oomDeaths} incidents`);
  }
  const memory = Object.entries(r.memoryByPool);
  if (memory.length > 0) {
    lines.push("", "Workers' resident memory at the incidents (ps):");
    for (const [pool, m] of memory) {
      lines.push(
        `  ${pool}: largest ${megabytesOfKb(m.largestKb)}, average ${
          megabytesOfKb(m.averageKb)
        } (${m.workers} workers)`,
      );
    }
  }
  if (Object.keys(r.cannotStart).length > 0) {
    lines.push(
      "",
      "Why php-fpm could not start (its configuration test):",
      ...table(r.cannotStart),
    );
  }
  if (Object.keys(r.upstreams).length > 0) {
    lines.push(
      "",
      "Upstreams the workers waited on (incidents; restarts held back):",
      ...table(r.upstreams),
    );
  }
  const peak = Math.max(...r.byHour);
  lines.push("", "By hour of day (local time):");
  r.byHour.forEach((n, hour) => {
    if (n > 0) {
      lines.push(
        `  ${String(hour).padStart(2, "0")}:00 ${String(n).padStart(4)}  ${
          "#".repeat(Math.ceil((n / peak) * 30))
        }`,
      );
    }
  });
  const list = (title: string, items: ScriptCount[]) => {
    if (items.length === 0) return;
    lines.push("", title);
    for (const s of items.slice(0, 10)) {
      lines.push(
        `  ${String(s.incidents).padStart(4)}  ${s.script}${
          s.longestSeconds > 0 ? ` (up to ${s.longestSeconds} s)` : ""
        }`,
      );
    }
  };
  list("Scripts in busy workers at the restart (incidents):", r.stuckScripts);
  list("Scripts in the slowlog (incidents):", r.slowlogScripts);
  lines.push(...childCrashLines(r));
  lines.push("", "Tuning hints:");
  if (r.hints.length === 0) lines.push("  none: the evidence points at no setting");
  for (const h of r.hints) lines.push(`  - ${h.setting}: ${h.advice}`);
  // scripts, slowlog lines and pool names came from php-fpm's world: shown, never obeyed by the
  // terminal
  return lines.map(escapeControl).join("\n") + "\n";
}
