/**
 * What the process table says of a pool after a failed probe: whether its master is gone (a
 * crash no confirmation can change) or every one of its processes is stopped (a hang no wait can
 * end). The master is the one {@link locateMaster} finds from root's facts, never the pid file's.
 */
import { type MasterIdentity, type MasterView, mayBeMaster, poolOf } from "./master.ts";

/** A certain verdict, and the facts that make it so. */
export interface Certainty {
  kind: "crash" | "hang";
  why: string;
}

/**
 * Whether the process table makes a failure certain. `crash`: the master last seen (`known`) is
 * gone or a zombie, and no process passes as this service's master (one started by someone else
 * would), nor may be one about to take its title. `hang`: every process of the live master's group is stopped (state T). Null when
 * nothing is certain, or the table cannot be read: the policy confirms as usual.
 */
export function certainty(
  view: MasterView,
  id: MasterIdentity,
  known: number | null,
  kind: "crash" | "hang",
): Certainty | null {
  if (view.rows === null) return null;
  if (kind === "crash") {
    const rows = view.rows;
    if (known === null || rows.some((p) => mayBeMaster(p, id, view.mainPid))) return null;
    const was = rows.find((p) => p.pid === known);
    return {
      kind,
      why: `master ${known} is ${
        was?.state === "Z" ? "a zombie" : "gone"
      } and no other ${id.processName} master of ${id.fpmConfig ?? id.service} runs`,
    };
  }
  if (view.live === null) return null;
  const pool = poolOf(view.rows, id, view.live, view.mainPid);
  if (pool.length === 0 || pool.some((p) => p.state !== "T")) return null;
  return {
    kind,
    why: `all ${pool.length} ${id.processName} processes of master ${view.live} are stopped`,
  };
}

/**
 * Whether every one of `idle` (the workers a status page shows idle) is stopped (state T) in the
 * live master's pool: then they take no request, whatever the page says, and the pool is hung,
 * not busy (a worker's user can stop its own workers). Null when the table cannot say; false
 * when any of them is not found (replaced since the page was read) or is not stopped.
 */
export function idleAllStopped(
  view: MasterView,
  id: MasterIdentity,
  idle: readonly number[],
): boolean | null {
  if (view.rows === null || view.live === null) return null;
  if (idle.length === 0) return false;
  const pool = poolOf(view.rows, id, view.live, view.mainPid);
  return idle.every((pid) =>
    pool.some((p) => p.pid === pid && p.pid !== view.live && p.state === "T")
  );
}
