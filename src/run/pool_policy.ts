/**
 * The policy of one pool among several of a service, while another pool of the same service
 * answers: pure decisions from its probe results and the clock. The service is up, so the
 * service's restart would interrupt the pools that serve; what is left is the failing pool's own
 * stuck workers (kill_stuck), confirmed as the service's failures are, limited as its restarts are.
 */
import type { Policy } from "../config/policy_settings.ts";
import { labelOf, type ProbeResult, verdictOf } from "../probe/result.ts";

/** What the policy remembers of one pool between probes (and between cron runs). */
export interface PoolState {
  /** Consecutive failed probes that count. */
  failures: number;
  /** Of which timeouts. */
  timeouts: number;
  /** When the current run of failures began, or null while the pool answers. */
  failingSince: number | null;
  /** The first failure's label (502, timeout...). */
  label: string;
  /** When this pool's stuck workers were killed, within the restart window, oldest first. */
  kills: number[];
  /** Failures before this do not count: the killed workers' successors are starting. */
  graceUntil: number;
  /**
   * When the operator was told nothing more would be done in this run of failures: nothing is,
   * until the pool answers again.
   */
  heldAt: number | null;
  /** An alert went out about this run of failures: its end is told too. */
  told: boolean;
  /** When it was found overloaded but taking requests in this run of failures (told once). */
  overloadedAt: number | null;
}

/** What to do for the pool now. */
export type PoolAction =
  /** Kill the pool's stuck workers (the service's kill_stuck rung, for this pool only). */
  | "kill_stuck"
  /** As many kills as the window allows did not keep it up: tell once, do nothing more. */
  | "hold"
  /** It answers again after a run of failures that was told. */
  | "recovered";

/** A pool's decision: its next state (null: nothing to remember), what to do, a quick re-probe. */
export interface PoolDecision {
  state: PoolState | null;
  action: PoolAction | null;
  /** A 5xx costs nothing to confirm: probe again after the confirm delay. */
  confirm: boolean;
}

/** A pool with nothing remembered. */
export function freshPoolState(): PoolState {
  return {
    failures: 0,
    timeouts: 0,
    failingSince: null,
    label: "",
    kills: [],
    graceUntil: 0,
    heldAt: null,
    told: false,
    overloadedAt: null,
  };
}

/**
 * Decides for one pool whose sibling answers. Only php-fpm's failures (5xx, timeouts, a refused
 * socket) count: a pool probe answering 404 or the wrong body is a setting to fix, and is left to
 * the caller to say.
 */
export function decidePool(
  previous: PoolState | undefined,
  result: ProbeResult,
  now: number,
  policy: Policy,
): PoolDecision {
  const state = { ...(previous ?? freshPoolState()) };
  state.kills = state.kills.filter((at) => now - at < policy.restartWindowMs);
  const verdict = verdictOf(result);
  if (verdict === "healthy") {
    const action = state.failingSince !== null && state.told ? "recovered" : null;
    const rest = { ...freshPoolState(), kills: state.kills, graceUntil: state.graceUntil };
    const forget = rest.kills.length === 0 && now >= rest.graceUntil;
    return { state: forget ? null : rest, action, confirm: false };
  }
  if (verdict !== "php_down" || now < state.graceUntil) {
    return { state: previous === undefined ? null : state, action: null, confirm: false };
  }
  state.failures++;
  if (result.kind === "timeout" || result.kind === "overloaded") state.timeouts++;
  state.failingSince ??= now - result.ms;
  if (state.label === "") state.label = labelOf(result);
  // held until it answers again: no more kills, no more alerts for this run of failures
  if (state.heldAt !== null) return { state, action: null, confirm: false };
  const reached = state.failures >= policy.failureThreshold ||
    state.timeouts >= policy.timeoutThreshold;
  if (!reached) return { state, action: null, confirm: result.kind !== "timeout" };
  if (state.kills.length < policy.maxRestarts) {
    return {
      state: {
        ...state,
        failures: 0,
        timeouts: 0,
        kills: [...state.kills, now],
        graceUntil: now + policy.gracePeriodMs,
        heldAt: null,
        told: true,
      },
      action: "kill_stuck",
      confirm: false,
    };
  }
  return { state: { ...state, heldAt: now, told: true }, action: "hold", confirm: false };
}

/**
 * After a kill of the pool's stuck workers: verified healthy, the run of failures is over (the
 * alert of the kill said so); not, it goes on, and its end will be told.
 */
export function afterKill(state: PoolState, ok: boolean): PoolState {
  return ok ? { ...state, failingSince: null, label: "", told: false } : state;
}

/**
 * After a kill not made because the pool was overloaded but taking requests: it does not count
 * toward the limit, and the next one is judged again (a pool that stops moving is hung).
 */
export function afterOverload(state: PoolState, now: number): PoolState {
  return { ...state, kills: state.kills.slice(0, -1), overloadedAt: state.overloadedAt ?? now };
}

/**
 * Forgets a pool's kills and its hold (`reset`, SIGHUP): it is judged afresh; a run of failures
 * that was told stays told, so that its end is told too.
 */
export function rearmPool(state: PoolState): PoolState {
  return { ...state, failures: 0, timeouts: 0, kills: [], heldAt: null };
}

/** After the service was restarted: every pool's workers are new; rearmed after the grace. */
export function afterServiceRestart(state: PoolState, now: number, policy: Policy): PoolState {
  return { ...rearmPool(state), graceUntil: now + policy.gracePeriodMs };
}

/**
 * Which pools' probes decide what: `healthy` answers, `failing` are php-fpm failures (5xx,
 * timeout, refused). The service is judged up when any pool answers.
 */
export function splitPools<T extends { result: ProbeResult }>(
  pools: readonly T[],
): { healthy: T[]; failing: T[] } {
  return {
    healthy: pools.filter((p) => verdictOf(p.result) === "healthy"),
    failing: pools.filter((p) => verdictOf(p.result) === "php_down"),
  };
}
