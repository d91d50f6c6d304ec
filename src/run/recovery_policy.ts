/**
 * The recovery policy: pure decisions from probe results and the clock, with no I/O. When to
 * restart (thresholds), how soon to probe again (confirm delay, grace), when to stop restarting
 * (flap protection) and when to tell someone (one alert per incident, not per probe).
 */
import { labelOf, type ProbeResult, verdictOf } from "../probe/result.ts";
import type { Policy } from "../config/policy_settings.ts";

/** What kind of trouble an incident is. */
export type IncidentKind =
  | "php_down"
  | "unreachable"
  | "misconfigured"
  | "overloaded"
  /** Most stuck workers wait on one peer (a database, an API, a mount): restarts cannot help. */
  | "upstream";

/** An incident: from the first failed probe to `successThreshold` healthy ones. */
export interface Incident {
  /** Stable for the incident's life: its alerts carry it, so that receivers thread and close them. */
  id: string;
  kind: IncidentKind;
  since: number;
  /** The first failure's label (502, timeout, refused...). */
  label: string;
  restarts: number;
  lastAlertAt: number | null;
  /** An upstream incident's peer, as its workers wait on it. */
  peer?: string | undefined;
  /** An upstream incident's kill rounds made (at most upstream_kill_rounds). */
  kills?: number | undefined;
}

/** One restart in the history. */
export interface RestartRecord {
  at: number;
  ok: boolean;
  label: string;
  detail: string;
  /**
   * php-fpm's own configuration test rejected its configuration: the start could not work, and
   * says nothing of php-fpm flapping. Not counted toward `max_restarts`.
   */
  rejected?: boolean | undefined;
}

/** Everything the policy remembers between probes (and between cron runs). */
export interface TargetState {
  /** Consecutive failed probes (5xx or timeout) that count. */
  failures: number;
  /** Of which timeouts. */
  timeouts: number;
  /** When the current run of failures started. */
  failingSince: number | null;
  /** Consecutive healthy probes. */
  successes: number;
  /** Healthy without a break since. */
  healthySince: number | null;
  incident: Incident | null;
  /** Restarts within the window, oldest first. */
  restarts: RestartRecord[];
  givenUpAt: number | null;
  /** Failures before this time do not count (php-fpm is starting). */
  graceUntil: number;
  /** When each kind of early warning was last sent. */
  warnedAt: Record<string, number>;
  /** The pool's master as last seen in its pid file: one we did not start means someone else did. */
  masterPid: number | null;
  /** Given up, then php-fpm was started by someone else: healthy again re-arms at once. */
  rearmWhenHealthy: boolean;
  /** Given up: when the next single restart is tried (`retry_after`), or null for never. */
  retryAt: number | null;
  /** Restarts tried since giving up. */
  retries: number;
  /**
   * When a start failed on a configuration php-fpm's test rejects: no start is tried again until
   * the test passes (the caller checks it), then at once, with the restart budget whole.
   */
  configRejectedAt: number | null;
}

/**
 * An incident's id, from when it began: unique for a target (two incidents of one target never
 * begin in the same millisecond), readable, and the same in every run that sees the incident.
 */
export function incidentId(since: number): string {
  const iso = new Date(since).toISOString();
  return `${iso.slice(0, 10).replaceAll("-", "")}-${iso.slice(11, 19).replaceAll(":", "")}-${
    iso.slice(20, 23)
  }`;
}

function openIncident(kind: IncidentKind, since: number, label: string): Incident {
  return { id: incidentId(since), kind, since, label, restarts: 0, lastAlertAt: null };
}

/** When the retry after `retries` retries is due, `from` the last attempt; null for never. */
export function nextRetry(retries: number, from: number, policy: Policy): number | null {
  const delays = policy.retryAfterMs;
  if (delays.length === 0) return null;
  return from + delays[Math.min(retries, delays.length - 1)]!;
}

/** A state with nothing remembered. */
export function freshState(): TargetState {
  return {
    failures: 0,
    timeouts: 0,
    failingSince: null,
    successes: 0,
    healthySince: null,
    incident: null,
    restarts: [],
    givenUpAt: null,
    graceUntil: 0,
    warnedAt: {},
    masterPid: null,
    rearmWhenHealthy: false,
    retryAt: null,
    retries: 0,
    configRejectedAt: null,
  };
}

/** The restarts that count toward `max_restarts`: not the starts a broken configuration refused. */
export function counted(restarts: readonly RestartRecord[]): RestartRecord[] {
  return restarts.filter((r) => r.rejected !== true);
}

/**
 * The configuration php-fpm's test rejected passes again (the operator fixed it): the next
 * failure is restarted at once, and the starts it refused, or flapping before, count no more.
 */
export function configPassesAgain(
  previous: TargetState,
): { state: TargetState; actions: Extract<Action, { type: "log" }>[] } {
  if (previous.configRejectedAt === null) return { state: previous, actions: [] };
  return {
    state: { ...rearm(previous), configRejectedAt: null },
    actions: [{
      type: "log",
      level: "info",
      message:
        "php-fpm's configuration test passes again: restarting, with the restart budget whole.",
    }],
  };
}

/** Why an alert goes out. */
export type AlertReason =
  | "gave_up"
  | "recovered"
  | "unreachable"
  | "misconfigured"
  | "overloaded"
  | "reminder"
  /** An upstream incident ended while php-fpm still fails: handled as a failure again. */
  | "upstream_over";

/** What the caller should do now, in order. */
export type Action =
  /** `retry`: one attempt after giving up, on the ladder's last rung. */
  | { type: "restart"; retry?: boolean }
  | { type: "alert"; reason: AlertReason; incident: Incident; downtimeMs?: number }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string }
  /**
   * An upstream incident: `opened` says it (one alert), `kill` asks for one round of killing the
   * stuck workers (the kill_stuck rung alone, when the ladder has it); nothing else is restarted.
   */
  | { type: "upstream"; incident: Incident; opened: boolean; kill: boolean };

/** How soon the next probe is due. */
export type NextProbe = "interval" | "confirm";

/** A decision: the new state, what to do, and when to probe next. */
export interface Decision {
  state: TargetState;
  actions: Action[];
  next: NextProbe;
}

function pruneRestarts(restarts: RestartRecord[], now: number, policy: Policy): RestartRecord[] {
  return restarts.filter((r) => now - r.at < policy.restartWindowMs);
}

function reminderDue(incident: Incident, now: number, policy: Policy): boolean {
  return policy.reminderMs > 0 && incident.lastAlertAt !== null &&
    now - incident.lastAlertAt >= policy.reminderMs;
}

/**
 * What the pid file says of the pool's master, before a probe is judged. A master that changed
 * without us (a deploy's reload or restart, the init system's own restart, an operator) opens the
 * grace period: its few failed probes are the change, not a failure to act on. While given up,
 * it also means someone repaired php-fpm: healthy again, restarting is armed again at once.
 */
export function noticeMaster(
  previous: TargetState,
  pid: number | null,
  now: number,
  policy: Policy,
): { state: TargetState; actions: Extract<Action, { type: "log" }>[] } {
  if (pid === null || pid === previous.masterPid) return { state: previous, actions: [] };
  const state = { ...previous, masterPid: pid };
  if (previous.masterPid === null) return { state, actions: [] };
  state.graceUntil = Math.max(state.graceUntil, now + policy.gracePeriodMs);
  // someone else's master that answers: the restarts before it say nothing of it
  if (
    state.givenUpAt !== null || state.restarts.length > 0 || state.configRejectedAt !== null
  ) state.rearmWhenHealthy = true;
  return {
    state,
    actions: [{
      type: "log",
      level: "info",
      message: `php-fpm's master changed without us (${previous.masterPid} -> ${pid}): ${
        Math.round(policy.gracePeriodMs / 1000)
      } s of grace${state.givenUpAt !== null ? "; healthy again, restarting is armed again" : ""}.`,
    }],
  };
}

/** Decides what a probe result calls for. */
export function decide(
  previous: TargetState,
  result: ProbeResult,
  now: number,
  policy: Policy,
): Decision {
  const state: TargetState = {
    ...previous,
    restarts: pruneRestarts(previous.restarts, now, policy),
    incident: previous.incident ? { ...previous.incident } : null,
  };
  const verdict = verdictOf(result);
  if (verdict === "healthy") return healthy(state, now, policy);
  state.successes = 0;
  state.healthySince = null;
  // a failure that a restart cannot fix breaks any run of php-fpm failures
  if (verdict === "unreachable" || verdict === "misconfigured") {
    return notForRestart(state, verdict, labelOf(result), now, policy);
  }
  // a master gone or stopped is php-fpm's own failure, whatever its workers waited on
  if (result.upstream !== undefined && result.certain === undefined) {
    return upstreamDown(state, result, now, policy);
  }
  if (state.incident?.kind === "upstream") {
    // its workers moved on, yet php-fpm still fails: that is a failure of its own again
    const over = state.incident;
    state.incident = null;
    const decision = phpDown(state, result, now, policy);
    return {
      ...decision,
      actions: [{ type: "alert", reason: "upstream_over", incident: over }, ...decision.actions],
    };
  }
  return phpDown(state, result, now, policy);
}

/** Kill rounds an upstream incident allows when the configuration does not say. */
export const DEFAULT_UPSTREAM_KILL_ROUNDS = 1;

/**
 * Most stuck workers wait on one peer: an incident of its own, told once, with at most
 * `upstreamKillRounds` rounds of killing the stuck workers and no restart while it lasts; the run
 * of failures ends, so that none is counted toward a restart meanwhile.
 */
function upstreamDown(
  state: TargetState,
  result: ProbeResult,
  now: number,
  policy: Policy,
): Decision {
  const up = result.upstream!;
  const actions: Action[] = [];
  state.failures = 0;
  state.timeouts = 0;
  state.failingSince = null;
  let opened = false;
  if (state.incident?.kind !== "upstream" || state.incident.peer !== up.peer) {
    opened = true;
    state.incident = {
      ...openIncident("upstream", now - up.forMs, labelOf(result)),
      peer: up.peer,
      kills: 0,
      lastAlertAt: now,
    };
  } else if (reminderDue(state.incident, now, policy)) {
    state.incident.lastAlertAt = now;
    actions.push({ type: "alert", reason: "reminder", incident: state.incident });
  }
  const incident = state.incident;
  // a kill round only where the policy without upstreams would act on its own: a pool seen hung
  // (or busy, with on_overload = "restart"); what the workers hold never adds a kill
  const wouldAct = result.pool?.verdict === "hung" ||
    (result.pool?.verdict === "busy" && policy.onOverload === "restart");
  const kill = wouldAct && state.givenUpAt === null && now >= state.graceUntil &&
    (incident.kills ?? 0) < (policy.upstreamKillRounds ?? DEFAULT_UPSTREAM_KILL_ROUNDS);
  if (kill) incident.kills = (incident.kills ?? 0) + 1;
  if (opened || kill) actions.push({ type: "upstream", incident, opened, kill });
  else {
    actions.push({
      type: "log",
      level: "debug",
      message: `${up.blocked} of ${up.of} workers still blocked on ${up.peer}: nothing restarted.`,
    });
  }
  return { state, actions, next: "interval" };
}

/** A healthy probe: counts towards the end of an incident and towards re-arming. */
function healthy(state: TargetState, now: number, policy: Policy): Decision {
  const actions: Action[] = [];
  state.failures = 0;
  state.timeouts = 0;
  state.failingSince = null;
  state.successes++;
  state.healthySince ??= now;
  // php-fpm answers: whatever its configuration was, it runs now
  state.configRejectedAt = null;
  // a probe that got through to a worker freed by a kill round does not end an upstream incident
  // (the next kill round would come with the next one): two in a row do
  const needed = state.incident?.kind === "upstream"
    ? Math.max(2, policy.successThreshold)
    : policy.successThreshold;
  if (state.incident && state.successes >= needed) {
    actions.push({
      type: "alert",
      reason: "recovered",
      incident: state.incident,
      downtimeMs: now - state.incident.since,
    });
    state.incident = null;
  }
  // healthy for long, or fixed by someone else (who started its master): armed again
  const fixed = state.rearmWhenHealthy && state.successes >= policy.successThreshold;
  if (fixed && state.givenUpAt === null) {
    Object.assign(state, rearm(state));
    actions.push({
      type: "log",
      level: "info",
      message: "Healthy on a master started by someone else: the restart budget is whole again.",
    });
  } else if (
    state.givenUpAt !== null && (now - state.healthySince >= policy.rearmAfterMs || fixed)
  ) {
    Object.assign(state, rearm(state));
    actions.push({
      type: "log",
      level: "info",
      message: fixed
        ? "Healthy again on a master started by someone else: restarting is armed again."
        : `Healthy for ${
          Math.round((now - state.healthySince) / 1000)
        } s: restarting is armed again.`,
    });
  }
  return { state, actions, next: "interval" };
}

/**
 * A failure a restart cannot mend (nginx down, a setup problem, an overloaded pool): an incident
 * of its own kind, one alert when it opens and reminders after; the run of failures ends.
 */
function notForRestart(
  state: TargetState,
  kind: "unreachable" | "misconfigured" | "overloaded",
  label: string,
  now: number,
  policy: Policy,
): Decision {
  const actions: Action[] = [];
  state.failures = 0;
  state.timeouts = 0;
  state.failingSince = null;
  if (state.incident?.kind !== kind) {
    state.incident = { ...openIncident(kind, now, label), lastAlertAt: now };
    actions.push({ type: "alert", reason: kind, incident: state.incident });
  } else if (reminderDue(state.incident, now, policy)) {
    state.incident.lastAlertAt = now;
    actions.push({ type: "alert", reason: "reminder", incident: state.incident });
  }
  return { state, actions, next: "interval" };
}

/** php-fpm failed (5xx, timeout): confirm, then restart within the limit, then give up. */
function phpDown(
  state: TargetState,
  result: ProbeResult,
  now: number,
  policy: Policy,
): Decision {
  const actions: Action[] = [];
  const label = labelOf(result);
  if (now < state.graceUntil) {
    actions.push({
      type: "log",
      level: "debug",
      message: `${label} during the grace period after a restart: not counted.`,
    });
    return { state, actions, next: "interval" };
  }
  if (result.pool?.verdict === "busy" && policy.onOverload === "alert" && !result.certain) {
    // overloaded, not dead: a restart would drop every request in flight and help nobody
    return notForRestart(state, "overloaded", label, now, policy);
  }
  state.failures++;
  if (result.kind === "timeout" || result.kind === "overloaded") state.timeouts++;
  // the failure began no later than the probe that saw it
  state.failingSince ??= now - result.ms;
  // the status page or the process table has made it certain (a hang, a master gone): a second
  // probe would only add downtime
  const reached = state.failures >= policy.failureThreshold ||
    state.timeouts >= policy.timeoutThreshold || result.pool?.verdict === "hung" ||
    result.certain !== undefined;
  if (!reached) {
    actions.push({
      type: "log",
      level: "debug",
      message: `${label}: failure ${state.failures} of ${policy.failureThreshold}, confirming.`,
    });
    // a 5xx costs nothing to confirm; a timeout already cost a full timeout
    return { state, actions, next: result.kind === "timeout" ? "interval" : "confirm" };
  }
  if (state.incident?.kind !== "php_down") {
    state.incident = openIncident("php_down", state.failingSince, label);
  }
  if (state.configRejectedAt !== null) {
    // a start would be refused the same way: tried again once the configuration test passes
    if (reminderDue(state.incident, now, policy)) {
      state.incident.lastAlertAt = now;
      actions.push({ type: "alert", reason: "reminder", incident: state.incident });
    }
    return { state, actions, next: "interval" };
  }
  if (state.givenUpAt !== null) {
    // retry_after as configured now: a state from before it, or a changed configuration
    state.retryAt = policy.retryAfterMs.length === 0
      ? null
      : state.retryAt ?? nextRetry(state.retries, state.givenUpAt, policy);
    if (state.retryAt !== null && now >= state.retryAt) {
      // giving up is not forever: one attempt, then a longer wait
      state.retries++;
      state.retryAt = nextRetry(state.retries, now, policy);
      actions.push({ type: "restart", retry: true });
    } else if (reminderDue(state.incident, now, policy)) {
      state.incident.lastAlertAt = now;
      actions.push({ type: "alert", reason: "reminder", incident: state.incident });
    }
    return { state, actions, next: "interval" };
  }
  if (counted(state.restarts).length >= policy.maxRestarts) {
    state.givenUpAt = now;
    state.retries = 0;
    state.retryAt = nextRetry(0, now, policy);
    state.incident.lastAlertAt = now;
    actions.push({ type: "alert", reason: "gave_up", incident: state.incident });
    return { state, actions, next: "interval" };
  }
  actions.push({ type: "restart" });
  return { state, actions, next: "interval" };
}

/**
 * Records a restart's outcome: history, grace period, and a fresh count of failures. A restart
 * verified healthy ends the incident when one healthy probe is enough (`successThreshold` 1): the
 * restart's own alert then tells the downtime, and no separate "recovered" alert follows.
 */
export function afterRestart(
  previous: TargetState,
  record: RestartRecord,
  policy: Policy,
): TargetState {
  const incident = previous.incident ?? openIncident("php_down", record.at, record.label);
  const over = record.ok && policy.successThreshold <= 1;
  // a retry after giving up that works: armed again, this restart the first of a new window
  const rearmed = record.ok && previous.givenUpAt !== null;
  return {
    ...(rearmed ? rearm(previous) : previous),
    failures: 0,
    timeouts: 0,
    failingSince: null,
    successes: record.ok ? 1 : 0,
    healthySince: record.ok ? record.at : null,
    restarts: [...(rearmed ? [] : pruneRestarts(previous.restarts, record.at, policy)), record],
    incident: over
      ? null
      : { ...incident, restarts: incident.restarts + 1, lastAlertAt: record.at },
    // a start the configuration refused leaves nothing starting to wait for
    graceUntil: record.rejected === true ? previous.graceUntil : record.at + policy.gracePeriodMs,
    configRejectedAt: record.rejected === true ? record.at : null,
  };
}

/** Forgets giving up and the restart history: `php-relaunch reset`, SIGHUP. */
export function rearm(previous: TargetState): TargetState {
  return {
    ...previous,
    givenUpAt: null,
    restarts: [],
    rearmWhenHealthy: false,
    retryAt: null,
    retries: 0,
  };
}
