/**
 * What a crash loop's alerts and incident records say: the signal, the count, the pool, the
 * requests nginx lost (as its log wrote them, www-data's file) and the newest core's frames.
 */
import type { ChildCrashRecord, IncidentRecord } from "../record/incidents.ts";
import type { FpmConfig } from "../fpm/config.ts";
import { signalLabel } from "../fpm/child_deaths.ts";
import type { NginxLost } from "../fpm/nginx_lost.ts";
import { crashCount, type CrashIncident } from "./crash_policy.ts";
import type { TargetContext } from "./context.ts";
import { seconds } from "../shared/time_units.ts";

/** php-fpm's error log as its configuration gives it: a path (relative ones under /var), or syslog. */
export function errorLogOf(config: FpmConfig | null): string {
  const value = config?.errorLog ?? "log/php-fpm.log";
  if (value === "syslog" || value.startsWith("/")) return value;
  // php-fpm's prefix for a relative error_log is /var
  return `/var/${value}`;
}

const when = (ms: number) => new Date(ms).toISOString();

/** The crashes by signal, for people: "signal 11 (SIGSEGV) 7, signal 6 (SIGABRT) 1". */
function signalsText(signals: Record<string, number>): string {
  return Object.entries(signals).sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${signalLabel(name)} ${n}`).join(", ");
}

/** The log line and the details of the alert that a pool's crashes crossed the threshold. */
export function openedAlert(o: {
  pool: string;
  incident: CrashIncident;
  fpmConfig: string | null;
  errorLog: string;
  nginxLog: string | null;
  lost: NginxLost;
  frames: readonly string[];
  quietMs: number;
}): { message: string; details: string[] } {
  const { pool, incident } = o;
  const n = crashCount(incident);
  const message = `PHP pool ${pool}: ${n} children crashed within ${
    seconds(incident.lastAt - incident.since)
  } (${
    signalsText(incident.signals)
  }); php-fpm was not restarted: its master respawns them, and a restart cannot mend what crashes them.`;
  const details = [
    `Pool: ${pool} (${o.fpmConfig ?? "php-fpm.conf"}; error log ${o.errorLog})`,
    `Crashes: ${n} from ${when(incident.since)} to ${when(incident.lastAt)}: ${
      signalsText(incident.signals)
    }`,
    ...lostLines(o.lost, o.nginxLog),
    ...(o.frames.length === 0
      ? []
      : ["Newest core dump (coredumpctl info):", ...o.frames.map((f) => `  ${f}`)]),
    `Nothing was restarted. Find the page or extension that crashes them (php-fpm's error log, a core dump); the incident ends after ${
      seconds(o.quietMs)
    } without a crash.`,
  ];
  return { message, details };
}

/** The log line of a crash loop that is over. */
export function resolvedMessage(pool: string, incident: CrashIncident, quietMs: number): string {
  return `PHP pool ${pool}: no child crashed for ${seconds(quietMs)}; ${
    crashCount(incident)
  } crashes from ${when(incident.since)} to ${when(incident.lastAt)} (${
    signalsText(incident.signals)
  }).`;
}

/** The incident record of a pool's crash loop, written when it opens and when it resolves. */
export function crashRecord(
  ctx: TargetContext,
  pool: string,
  incident: CrashIncident,
  status: "firing" | "resolved",
  why: string,
  config: FpmConfig | null,
  seen: Pick<ChildCrashRecord, "lost" | "lostError" | "frames">,
): IncidentRecord {
  const { cfg, target, deps } = ctx;
  const now = deps.clock.now();
  const top = Object.entries(incident.signals).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "signal";
  return {
    version: 1,
    at: now,
    host: cfg.hostname,
    target: target.name,
    incident: incident.id,
    poolName: pool,
    label: top,
    pool: null,
    why,
    evidence: {
      at: now,
      status: null,
      statusError: null,
      processes: [],
      configFile: target.fpmConfig,
      settings: config?.pools.find((p) => p.pool === pool) ?? null,
      errorLogFile: errorLogOf(config),
      slowlog: [],
      errorLog: [],
      memory: null,
    },
    restart: null,
    kind: "child_crashes",
    childCrashes: {
      status,
      signals: { ...incident.signals },
      since: incident.since,
      lastAt: incident.lastAt,
      ...seen,
    },
  };
}

/** What nginx lost, as alert lines: shown as its log wrote them (www-data can write there). */
function lostLines(lost: NginxLost, path: string | null): string[] {
  if (path === null) return [];
  if ("error" in lost) return [`Requests nginx lost: ${path} not read: ${lost.error}`];
  if (lost.lost.length === 0) {
    return [`Requests nginx lost: none in ${path} at those seconds`];
  }
  return [
    `Requests nginx lost at those seconds, as ${path} says (a file www-data can write):`,
    ...lost.lost.map((l) => `  ${String(l.count).padStart(5)}  ${l.request}`),
  ];
}
