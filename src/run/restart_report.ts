/**
 * After a restart of the target's service: the policy's memory of it, the one log line and alert
 * that say what was done and what was seen (the OOM killer's word, why php-fpm could not start),
 * and its incident record.
 */
import type { RelaunchReport } from "../act/restart.ts";
import type { Policy } from "../config/policy_settings.ts";
import { type Evidence, evidenceLines } from "../fpm/evidence.ts";
import type { OomKill } from "../fpm/oom.ts";
import { labelOf, type ProbeResult } from "../probe/result.ts";
import { countRestart } from "../record/metrics.ts";
import { humanKb } from "../shared/memory_units.ts";
import { clip } from "../shared/redact.ts";
import { logIncident, type TargetContext } from "./context.ts";
import { afterRestart, counted } from "./recovery_policy.ts";
import type { Teller, Thread } from "./teller.ts";
import { seconds } from "../shared/time_units.ts";

/** A restart made: the failure that called for it, and what the ladder did. */
export interface Restart {
  first: ProbeResult;
  policy: Policy;
  /** When the failure began. */
  since: number;
  /** What was known before the restart. */
  evidence: Evidence;
  /** php-fpm's ladder, then php-cgi's when it is relaunched too. */
  reports: RelaunchReport[];
  /** A single attempt after giving up. */
  retry: boolean;
}

/** Why php-fpm would not start, and where that was read. */
export interface CannotStart {
  /** "Configuration test (php-fpm8.2 -t -y ...)", "php-fpm's error log". */
  source: string;
  errors: string[];
  /** php-fpm's own test rejects the configuration: no start can work until it is fixed. */
  rejected: boolean;
}

/** What was learnt after the restart of why php-fpm failed or would not start. */
export interface Findings {
  cannotStart: CannotStart | null;
  oom: OomKill[];
}

/** The failed pool's name, from its status page or its settings, for the incident record. */
function poolNameOf(evidence: Evidence): { poolName?: string } {
  const name = evidence.status?.pool ?? evidence.settings?.pool;
  return name === undefined ? {} : { poolName: name };
}

/** The most of a failed restart's reason kept (in the log line, the alert, the state file). */
const MAX_WHY = 1000;

/** Remembers the restart and tells what was done; true when every service is back. */
export function reportRestart(
  ctx: TargetContext,
  teller: Teller,
  { first, policy, since, evidence, reports, retry }: Restart,
  { cannotStart, oom }: Findings,
): boolean {
  const { cfg, deps, memory, target } = ctx;
  const retries = memory.state.retries;
  const failed = reports.filter((r) => !r.ok);
  const label = labelOf(first);
  const now = deps.clock.now();
  const oomLines = oom.map((k) =>
    `${target.fpm.processName} pid ${k.pid} killed by the OOM killer${
      k.at === null ? "" : ` at ${new Date(k.at).toISOString()}`
    }, ${humanKb(k.rssKb)} resident`
  );
  // kept in the state file's restart history: bounded, whatever the commands said
  const why = clip(
    [
      ...failed.map((r) => `${r.service}: ${r.reason}`),
      ...(cannotStart === null
        ? []
        : [`${target.fpm.processName} cannot start: ${cannotStart.errors[0]}`]),
    ].join("; "),
    MAX_WHY,
  );
  const before = memory.state.incident;
  const rejected = failed.length > 0 && cannotStart?.rejected === true;
  memory.state = afterRestart(
    memory.state,
    { at: now, ok: failed.length === 0, label, detail: why, ...(rejected ? { rejected } : {}) },
    policy,
  );
  memory.counters = countRestart(memory.counters, failed.length === 0, now);
  const details = [
    ...teller.probeDetails(first),
    ...oomLines,
    ...reports.flatMap((r) => [
      `Service ${r.service} (${cfg.init}): ${
        r.ok ? `running again after the ${r.rung} rung` : `FAILED: ${r.reason}`
      }; ${r.killed} processes killed, ${r.attempts} start attempts`,
      ...r.steps.map((step) => `  ${step}`),
    ]),
    `Restarts in the last ${seconds(policy.restartWindowMs)}: ${
      counted(memory.state.restarts).length
    } of at most ${policy.maxRestarts}${
      rejected
        ? ` (a start the configuration test refuses is not counted: the next is made once ${target.fpm.processName} -t passes)`
        : ""
    }`,
    ...(cannotStart === null ? [] : [
      `${cannotStart.source}:`,
      ...cannotStart.errors.map((e) => `  ${e}`),
    ]),
    "",
    "Before the restart:",
    ...(first.pool ? [`Pool judged ${first.pool.verdict}: ${first.pool.why}`] : []),
    ...evidenceLines(evidence),
  ];
  // a restart that ended the incident closes it where alerts are threaded
  const thread: Thread | null = memory.state.incident !== null
    ? { incident: memory.state.incident, status: "firing" }
    : before !== null
    ? { incident: before, status: "resolved" }
    : null;
  if (failed.length === 0) {
    details.push(`Down for ${seconds(now - since)} (since ${new Date(since).toISOString()})`);
  }
  announce(
    ctx,
    teller,
    { label, ok: failed.length === 0, why, retry, retries, oomLines, rejected },
    details,
    thread,
  );
  return failed.length === 0;
}

/** The restart's one log line and alert: a restart, a retry, and whether it worked. */
function announce(
  ctx: TargetContext,
  teller: Teller,
  r: {
    label: string;
    ok: boolean;
    why: string;
    retry: boolean;
    retries: number;
    oomLines: string[];
    rejected: boolean;
  },
  details: string[],
  thread: Thread | null,
): void {
  const { memory } = ctx;
  if (r.ok && r.retry) {
    teller.event(
      "info",
      `${r.label} PHP restarted by retry ${r.retries} after giving up: healthy again, restarting is armed again.`,
      // the incident is over when one healthy probe is enough; else "recovered" comes later
      memory.state.incident === null ? "PHP recovered" : "PHP restart",
      details,
      thread,
    );
  } else if (r.ok) {
    const cause = r.oomLines.length === 0
      ? ""
      : ` (${r.oomLines[0]}${r.oomLines.length > 1 ? ", and more" : ""})`;
    teller.event(
      "info",
      `${r.label} PHP restarted${cause}.`,
      "PHP restart",
      details,
      thread,
    );
  } else {
    const next = memory.state.retryAt;
    teller.event(
      "error",
      r.retry
        ? `${r.label} PHP retry ${r.retries} after giving up failed (${r.why}); ${
          next === null ? "no more retries" : `next retry at ${new Date(next).toISOString()}`
        }.`
        : `${r.label} PHP restart failed (${r.why})${
          r.rejected ? `; the next start is made once ${ctx.target.fpm.processName} -t passes` : ""
        }.`,
      r.retry ? "PHP retry failed" : "PHP restart failed",
      details,
      thread,
    );
  }
}

/** Appends the restart's incident to the incident log; a failure is logged, never thrown. */
export async function recordRestart(
  ctx: TargetContext,
  first: ProbeResult,
  evidence: Evidence,
  report: RelaunchReport,
  { cannotStart, oom }: Findings,
): Promise<void> {
  const { cfg, deps, target } = ctx;
  await logIncident(ctx, {
    version: 1,
    at: deps.clock.now(),
    host: cfg.hostname,
    target: target.name,
    ...(ctx.memory.state.incident ? { incident: ctx.memory.state.incident.id } : {}),
    ...poolNameOf(evidence),
    label: labelOf(first),
    pool: first.pool?.verdict ?? null,
    why: first.pool?.why ?? first.detail,
    evidence,
    restart: { ok: report.ok, rung: report.rung, steps: report.steps },
    ...(cannotStart === null ? {} : { cannotStart: cannotStart.errors }),
    ...(oom.length === 0 ? {} : { oomKills: oom }),
  });
}
