/**
 * `php-relaunch status`: what each target is doing, read from the state files that cron runs,
 * mcron runs and watch mode keep. It never takes their locks and never waits: the files are
 * replaced whole (rename), so a read sees the last complete save.
 */
import { escapeControl } from "../shared/redact.ts";
import type { Policy } from "../config/policy_settings.ts";
import { cronPolicy } from "../config/policy_settings.ts";
import { counted } from "../run/recovery_policy.ts";
import { type Config, statePath } from "../config/settings.ts";
import { DEFAULT_TIMEOUT_MS } from "../config/targets.ts";
import type { Deps, Fs } from "../shared/deps.ts";
import { ExitCode } from "../shared/errors.ts";
import type { LastProbe, Memory } from "../run/state.ts";
import { fileStateStore, storedTargets } from "../run/state.ts";
import { seconds } from "../shared/time_units.ts";
import { filePauses, type Pause, type Pauses } from "../run/pause_file.ts";

/** Where a target stands. */
export type Standing =
  /** No state file yet: nothing has probed it. */
  | "unknown"
  | "healthy"
  /** Failed probes not yet confirmed (n of the threshold). */
  | "failing"
  /** An incident is open: php-fpm down, nginx unreachable, a setup problem, an overloaded pool. */
  | "incident"
  /** Restarting was given up until re-armed. */
  | "given_up";

/** One target's status, also its JSON form. */
export interface TargetStatus {
  target: string;
  standing: Standing;
  /** Consecutive failed probes, of the threshold that restarts. */
  failures: { count: number; of: number };
  incident: {
    id: string;
    kind: string;
    label: string;
    since: string;
    /** An upstream incident's peer: what the pool's workers wait on. */
    peer?: string;
  } | null;
  givenUpAt: string | null;
  /** Given up: when the next single restart is tried, or null for never. */
  nextRetryAt: string | null;
  /** Restarts and alerts held until `until`. */
  paused: { until: string; by: string; reason: string } | null;
  /** A restart under way since then (it is bounded by its commands' timeouts). */
  restartingSince: string | null;
  lastProbe: { at: string; label: string; verdict: string; ms: number } | null;
  restarts: { used: number; max: number; windowMinutes: number };
  lastRestart: { at: string; ok: boolean; cause: string } | null;
  /**
   * With several pools: each pool's last probe, and for one failing while another answered,
   * since when, the attempts to kill its stuck workers within the window, and whether it is held.
   */
  pools: {
    name: string;
    up: boolean;
    failingSince: string | null;
    kills: number;
    heldAt: string | null;
  }[];
  /** Pools whose children crash in a loop (an open child_crashes incident), when there are. */
  childCrashes?: { pool: string; id: string; since: string; crashes: number; signals: string }[];
}

const iso = (ms: number) => new Date(ms).toISOString();

/** A target's status from its memory (null: no state file) under its policy. Pure. */
export function statusOf(
  target: string,
  memory: Memory | null,
  policy: Policy,
  pause: Pause | null = null,
  now = 0,
): TargetStatus {
  const state = memory?.state;
  const last = state?.restarts.at(-1);
  const standing: Standing = memory === null
    ? "unknown"
    : state!.givenUpAt !== null
    ? "given_up"
    : state!.incident !== null
    ? "incident"
    : state!.failures > 0
    ? "failing"
    : "healthy";
  return {
    target,
    standing,
    failures: { count: state?.failures ?? 0, of: policy.failureThreshold },
    incident: state?.incident
      ? {
        id: state.incident.id,
        kind: state.incident.kind,
        label: state.incident.label,
        since: iso(state.incident.since),
        ...(state.incident.peer === undefined ? {} : { peer: state.incident.peer }),
      }
      : null,
    givenUpAt: state?.givenUpAt == null ? null : iso(state.givenUpAt),
    nextRetryAt: state?.givenUpAt == null || state.retryAt === null ? null : iso(state.retryAt),
    paused: pause !== null && pause.until > now
      ? { until: iso(pause.until), by: pause.by, reason: pause.reason }
      : null,
    restartingSince: memory?.restartingSince == null ? null : iso(memory.restartingSince),
    lastProbe: memory?.lastProbe ? probeOf(memory.lastProbe) : null,
    restarts: {
      used: state === undefined ? 0 : counted(state.restarts).length,
      max: policy.maxRestarts,
      windowMinutes: policy.restartWindowMs / 60_000,
    },
    lastRestart: last
      ? {
        at: iso(last.at),
        ok: last.ok,
        cause: last.ok ? last.label : `${last.label}: ${last.detail}`,
      }
      : null,
    pools: Object.entries(memory?.counters.pools ?? {}).map(([name, p]) => {
      const kept = memory?.pools[name];
      return {
        name,
        up: p.up,
        failingSince: kept?.failingSince == null ? null : iso(kept.failingSince),
        kills: kept?.kills.filter((at) => now - at < policy.restartWindowMs).length ?? 0,
        heldAt: kept?.heldAt == null ? null : iso(kept.heldAt),
      };
    }),
    ...crashLoopsOf(memory),
  };
}

/** The open crash loops of a target's pools, as `status` shows them. */
function crashLoopsOf(memory: Memory | null): Pick<TargetStatus, "childCrashes"> {
  const open = Object.entries(memory?.childCrashes?.pools ?? {}).flatMap(([pool, p]) =>
    p.incident === null ? [] : [{
      pool,
      id: p.incident.id,
      since: iso(p.incident.since),
      crashes: Object.values(p.incident.signals).reduce((a, b) => a + b, 0),
      signals: Object.entries(p.incident.signals).map(([name, n]) => `${name} ${n}`).join(", "),
    }]
  );
  return open.length === 0 ? {} : { childCrashes: open };
}

function probeOf(p: LastProbe) {
  return { at: iso(p.at), label: p.label, verdict: p.verdict, ms: p.ms };
}

/** Exit 0 when every target and pool is healthy (or not probed yet), 3 when one is not. */
export function statusExit(list: readonly TargetStatus[]): ExitCode {
  const down = list.some((t) =>
    (t.standing !== "healthy" && t.standing !== "unknown") || t.pools.some((p) => !p.up)
  );
  return down ? ExitCode.PhpDown : ExitCode.Ok;
}

/** The status for people: a line per target, then its details. */
export function renderStatus(list: readonly TargetStatus[], now: number): string {
  if (list.length === 0) return "no target has a state file yet\n";
  const ago = (at: string) => `${seconds(Math.max(0, now - Date.parse(at)))} ago`;
  return list.map((t) => {
    const head = {
      unknown: "not probed yet",
      healthy: "healthy",
      failing: `failing (${t.failures.count} of ${t.failures.of})`,
      incident: `incident since ${t.incident?.since} (${t.incident?.kind}, ${t.incident?.label}${
        t.incident?.peer === undefined ? "" : `, workers blocked on ${t.incident.peer}`
      })`,
      "given_up": `given up at ${t.givenUpAt} (${
        t.nextRetryAt === null ? "no retries" : `next retry at ${t.nextRetryAt}`
      }; or healthy again, SIGHUP, reset)`,
    }[t.standing];
    const lines = [`${t.target}: ${head}`];
    if (t.paused) {
      lines.push(`  paused       until ${t.paused.until} by ${t.paused.by}: ${t.paused.reason}`);
    }
    if (t.restartingSince) lines.push(`  restarting   since ${t.restartingSince}`);
    if (t.incident) lines.push(`  incident     #${t.incident.id}`);
    if (t.lastProbe) {
      lines.push(
        `  last probe   ${t.lastProbe.label} (${t.lastProbe.verdict}) in ${t.lastProbe.ms} ms, ${
          ago(t.lastProbe.at)
        }`,
      );
    }
    lines.push(
      `  restarts     ${t.restarts.used} of at most ${t.restarts.max} in ${t.restarts.windowMinutes} min`,
    );
    if (t.lastRestart) {
      lines.push(
        `  last restart ${t.lastRestart.at}, ${
          t.lastRestart.ok ? "healthy again" : "failed"
        } (${t.lastRestart.cause})`,
      );
    }
    for (const p of t.pools) {
      const kills = p.kills === 0 ? "" : `; ${p.kills} attempts to kill its stuck workers`;
      lines.push(
        `  pool ${p.name.padEnd(8)}${
          p.up ? "answering" : `failing${p.failingSince ? ` since ${p.failingSince}` : ""}`
        }${kills}${
          p.heldAt ? `; held since ${p.heldAt} (nothing more done until it answers)` : ""
        }`,
      );
    }
    for (const c of t.childCrashes ?? []) {
      lines.push(
        `  crash loop   pool ${c.pool} since ${c.since} (#${c.id}): ${c.crashes} children crashed (${c.signals}); not restarted`,
      );
    }
    // a pause's reason and a restart's cause are others' words: each line stays one line
    return lines.map(escapeControl).join("\n") + "\n";
  }).join("");
}

/**
 * Every target's status: the configured ones, or, with none, every state file in the state
 * folder (named after its service, as the cron form names them, under the cron form's policy).
 */
export async function readTargetStatuses(
  cfg: Config,
  fs: Fs,
  now: number,
  pauses: Pauses = filePauses(cfg.stateDir),
): Promise<TargetStatus[]> {
  const targets = cfg.targets.length > 0
    ? cfg.targets.map((t) => ({ name: t.name, file: t.stateFile, policy: t.policy }))
    : (await storedTargets(fs, cfg.stateDir)).map((name) => ({
      name,
      file: statePath(cfg.stateDir, name),
      policy: cronPolicy(DEFAULT_TIMEOUT_MS),
    }));
  return await Promise.all(targets.map(async (t) => {
    const exists = await fs.info(t.file).catch(() => null);
    const memory = exists === null ? null : await fileStateStore(t.file).load();
    return statusOf(t.name, memory, t.policy, await pauses.read(t.name), now);
  }));
}

/** `status`: prints every target's standing, from the state files (no log, no lock, no wait). */
export async function printStatus(cfg: Config, deps: Deps): Promise<ExitCode> {
  const list = await readTargetStatuses(cfg, deps.fs, deps.clock.now());
  deps.stdout(
    cfg.report.format === "json"
      ? JSON.stringify(list, null, 2) + "\n"
      : renderStatus(list, deps.clock.now()),
  );
  return statusExit(list);
}
