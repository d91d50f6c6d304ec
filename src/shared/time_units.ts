/** Durations for people, as the log lines and alerts say them. */

/** How many seconds, for people: "45 s", and from two minutes on "5 min". */
export function seconds(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}
