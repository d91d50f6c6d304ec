/**
 * When the probes of one scheduled run happen. A run covers one scheduler period (a minute under
 * cron, like the original): it probes every `timeout` seconds, floor(period / timeout) times, and
 * ends before the next scheduled run starts.
 */

/** The length of one cron-driven run. */
export const DEFAULT_RUN_MS = 60_000;

/** After a restart, php-fpm gets at least this long before the next probe (the original's 10 s). */
export const MIN_SETTLE_MS = 10_000;

/** The probe plan of one run. */
export interface RunPlan {
  /** How many probes at most: floor(period / timeout). */
  probes: number;
  /** The probe interval, which is the timeout. */
  intervalMs: number;
  /** The latest offset from the run's start at which a probe may begin and still end in the window. */
  lastStartOffsetMs: number;
}

/** The plan for a run of `runMs` whose probes each have `timeoutMs` to answer. */
export function planRun(timeoutMs: number, runMs: number = DEFAULT_RUN_MS): RunPlan {
  const probes = Math.max(1, Math.floor(runMs / timeoutMs));
  return { probes, intervalMs: timeoutMs, lastStartOffsetMs: (probes - 1) * timeoutMs };
}

/** How long to wait after a restart before probing again: max(timeout, 10 s). */
export function settleMs(timeoutMs: number): number {
  return Math.max(timeoutMs, MIN_SETTLE_MS);
}

/**
 * When the next probe is due, as an absolute time, or null when the run is over.
 *
 * Probe times are nominal (start + k × interval), so a probe's own duration is subtracted from the
 * wait and no drift accumulates. After a restart the next probe is due `settleMs` after the
 * restart ended. A probe that could not finish inside the window is not started: the next cron
 * run takes over.
 */
export function nextProbeAt(
  plan: RunPlan,
  run: { startedAt: number; probesDone: number },
  previous: { dueAt: number; restartEndedAt: number | null },
): number | null {
  if (run.probesDone >= plan.probes) return null;
  const due = previous.restartEndedAt === null
    ? previous.dueAt + plan.intervalMs
    : previous.restartEndedAt + settleMs(plan.intervalMs);
  return due <= run.startedAt + plan.lastStartOffsetMs ? due : null;
}
