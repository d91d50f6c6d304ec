/**
 * When probes happen. A scheduled run covers one scheduler period (a minute under cron, like the
 * original): it probes every `timeout` seconds, floor(period / timeout) times, and ends before
 * the next scheduled run starts. Watch mode uses the same rules without the end.
 */

/** The pauses that decide when the next probe is due. */
export interface Timing {
  intervalMs: number;
  confirmDelayMs: number;
  /** After a restart. */
  settleMs: number;
}

/**
 * When the next probe is due, as an absolute time. Due times are nominal (the previous due time
 * plus the interval), so a probe's own duration is taken off the wait and no drift accumulates;
 * never earlier than now.
 * A failure being confirmed is probed again `confirmDelayMs` after it was seen; after a restart,
 * `settleMs` after the restart ended.
 */
export function nextDue(
  previous: { dueAt: number; now: number; confirm: boolean; restartEndedAt: number | null },
  timing: Timing,
): number {
  if (previous.restartEndedAt !== null) return previous.restartEndedAt + timing.settleMs;
  if (previous.confirm) return previous.now + timing.confirmDelayMs;
  // a probe that outlasted the interval makes the next one due now, not in the past: due times
  // that fell behind would let a run of timeouts outlast the scheduler's period
  return Math.max(previous.dueAt + timing.intervalMs, previous.now);
}

/** Whether a probe due at `due` can finish before the run's end, so runs never overlap. */
export function fitsInRun(
  due: number,
  run: { startedAt: number; runMs: number },
  timeoutMs: number,
): boolean {
  return due + timeoutMs <= run.startedAt + run.runMs;
}
