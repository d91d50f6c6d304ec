/**
 * The recovery policy's numbers, as configured: the file's settings made into a {@link Policy},
 * and the fixed policy of the original's command line. Pure.
 */
import { type FilePolicy, WATCH_DEFAULTS } from "./file.ts";

/** The numbers of the policy. Times in milliseconds. */
export interface Policy {
  /** Consecutive failed probes (5xx or timeouts) before a restart. */
  failureThreshold: number;
  /** Consecutive timeouts that are enough on their own (each costs a full timeout to see). */
  timeoutThreshold: number;
  /** Consecutive healthy probes for an incident to count as over. */
  successThreshold: number;
  /** The pause before the probe that confirms a 5xx, instead of the full interval. */
  confirmDelayMs: number;
  /** The pause between probes otherwise. */
  intervalMs: number;
  /** After a restart, failures do not count for this long. */
  gracePeriodMs: number;
  /** At most this many restarts within `restartWindowMs`; beyond, give up until re-armed. */
  maxRestarts: number;
  restartWindowMs: number;
  /** Healthy this long while given up: re-arm by itself. */
  rearmAfterMs: number;
  /** Repeat the alert of an open incident this often; 0 for never. */
  reminderMs: number;
  /** Given up, wait this long before each single retry; the last repeats; [] for never. */
  retryAfterMs: readonly number[];
  /** A pause without --for lasts this long; none may last longer than the maximum. */
  pauseDefaultMs: number;
  pauseMaxMs: number;
  /** A pool the status page shows overloaded but moving: alert only, or restart anyway. */
  onOverload: "alert" | "restart";
  /**
   * Rounds of killing the stuck workers one upstream incident allows (unset: 1); restarts wait
   * until it is over.
   */
  upstreamKillRounds?: number;
}

/** After a restart, php-fpm gets at least this long before the next probe (the original's 10 s). */
export const MIN_SETTLE_MS = 10_000;

/** How long to wait after a restart before probing again in the cron form: max(timeout, 10 s). */
export function settleMs(timeoutMs: number): number {
  return Math.max(timeoutMs, MIN_SETTLE_MS);
}

/**
 * The policy of the original's command line: one timeout restarts, as it did, but a 5xx is
 * confirmed by a second one a second later; at most 3 restarts in 15 minutes; one rung, kill.
 * As the settings of a file, laid over its [defaults].
 */
export function cronDefaults(timeoutMs: number): Partial<FilePolicy> {
  return {
    "failure_threshold": 2,
    "timeout_threshold": 1,
    "success_threshold": 1,
    "confirm_delay": 1000,
    interval: timeoutMs,
    "grace_period": settleMs(timeoutMs),
    "max_restarts": 3,
    "restart_window": 15 * 60_000,
    "rearm_after": 15 * 60_000,
    reminder: 0,
    "on_overload": "alert",
    rungs: ["kill"],
  };
}

/** {@link cronDefaults} as the policy. */
export function cronPolicy(timeoutMs: number): Policy {
  return policyOf({ ...WATCH_DEFAULTS, ...cronDefaults(timeoutMs) });
}

/** The policy of a target's settings. */
export function policyOf(p: FilePolicy): Policy {
  return {
    failureThreshold: p.failure_threshold,
    timeoutThreshold: p.timeout_threshold,
    successThreshold: p.success_threshold,
    confirmDelayMs: p.confirm_delay,
    intervalMs: p.interval,
    gracePeriodMs: p.grace_period,
    maxRestarts: p.max_restarts,
    restartWindowMs: p.restart_window,
    rearmAfterMs: p.rearm_after,
    reminderMs: p.reminder,
    retryAfterMs: p.retry_after,
    pauseDefaultMs: p.pause_default,
    pauseMaxMs: p.pause_max,
    onOverload: p.on_overload,
    upstreamKillRounds: p.upstream_kill_rounds,
  };
}
