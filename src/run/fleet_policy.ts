/**
 * The fleet's decisions, pure: which hosts fail, whether that many is a shared cause, whether a
 * restart's slot is among the first ones, and what the fleet-wide alert does next. etcd's keys
 * come in; nothing here does I/O, and nothing here names a process.
 */

/** The number of hosts the fleet has: its size, or its list's length. */
export function fleetSize(hosts: number | readonly string[]): number {
  return typeof hosts === "number" ? hosts : hosts.length;
}

/**
 * The hosts with at least one failing key, from the keys' names below `<prefix>failing/`
 * (`host/target`), each once; with a list of hosts, only those.
 */
export function failingHosts(
  names: readonly string[],
  hosts: number | readonly string[],
): string[] {
  const found = new Set<string>();
  for (const name of names) {
    const host = name.split("/")[0] ?? "";
    if (host === "") continue;
    if (typeof hosts !== "number" && !hosts.includes(host)) continue;
    found.add(host);
  }
  return [...found].sort();
}

/** The most host names a message lists; the rest are counted ("+N more"). */
export const MAX_HOSTS_SHOWN = 20;

/**
 * The failing hosts as a message says them: their number, at most the fleet's size (a forged
 * listing cannot claim more), and at most {@link MAX_HOSTS_SHOWN} names, then "+N more".
 */
export function hostsSaid(
  failing: readonly string[],
  size: number,
): { n: number; names: string } {
  const shown = failing.slice(0, MAX_HOSTS_SHOWN).join(", ");
  const more = failing.length - MAX_HOSTS_SHOWN;
  return { n: Math.min(failing.length, size), names: more > 0 ? `${shown} +${more} more` : shown };
}

/**
 * Whether a shared cause holds a restart now: never a certain failure's (a master gone, a
 * certain hang: restarting mends it whatever the others do), and not once the target's restarts
 * have been held `maxHoldMs` (since `heldSince`): they resume then, through the slots.
 */
export function holdsRestart(
  shared: boolean,
  certain: boolean,
  heldSince: number | null,
  now: number,
  maxHoldMs: number,
): boolean {
  if (!shared || certain) return false;
  return heldSince === null || now - heldSince < maxHoldMs;
}

/**
 * Whether `failing` hosts of `size` at the same time is a shared cause (the database, a bad
 * deploy): more than `share` of them. Restarts are held then: the herd would meet the cause.
 */
export function isSharedCause(failing: number, size: number, share: number): boolean {
  return size > 0 && Math.min(failing, size) / size > share;
}

/**
 * Whether the slot key `mine` is among the first `max` of `ordered` (the semaphore's keys, oldest
 * create revision first): etcd's semaphore recipe. A key not listed holds no slot.
 */
export function holdsSlot(ordered: readonly string[], mine: string, max: number): boolean {
  const at = ordered.indexOf(mine);
  return at >= 0 && at < max;
}

/** How long the share must stay below the threshold before the fleet-wide failure is over. */
export const FLEET_RESOLVE_AFTER_MS = 60_000;
/** The least time between two fleet-wide alerts of one direction (failure, or resolved). */
export const FLEET_ALERT_EVERY_MS = 300_000;

/**
 * What this watchdog knows of the fleet-wide alert: none seen, or seen (whether it holds the
 * alert key, whether its alert went out, and since when the share has been below the threshold).
 */
export type FleetAlertState = null | {
  owner: boolean;
  alerted: boolean;
  since: number;
  hosts: readonly string[];
  belowSince: number | null;
};

/**
 * The next move of the fleet-wide alert: `claim` the alert key when a shared cause begins (the one
 * that gets it alerts, the others say it only in their log); `below` when the share first drops
 * under the threshold, `above` when it rises again before the end; once it has stayed below
 * `resolveAfterMs`, `resolve` it when this host holds the key, `forget` it when another does.
 */
export function fleetAlertMove(
  state: FleetAlertState,
  shared: boolean,
  now: number,
  resolveAfterMs = FLEET_RESOLVE_AFTER_MS,
): "claim" | "resolve" | "forget" | "below" | "above" | "none" {
  if (shared) return state === null ? "claim" : state.belowSince === null ? "none" : "above";
  if (state === null) return "none";
  if (state.belowSince === null) return "below";
  if (now - state.belowSince < resolveAfterMs) return "none";
  return state.owner ? "resolve" : "forget";
}

/** Whether an alert of a direction last sent at `lastAt` may be sent again at `now`. */
export function mayAlertAgain(
  lastAt: number | null,
  now: number,
  everyMs = FLEET_ALERT_EVERY_MS,
): boolean {
  return lastAt === null || now - lastAt >= everyMs;
}
