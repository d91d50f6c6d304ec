/**
 * What the process table says of a pool after a failed probe: whether its master is gone (a
 * crash no confirmation can change) or every one of its processes is stopped (a hang no wait can
 * end). One `ps` of every process, read by name: the master is the one that leads its process
 * group, as php-fpm's daemon calls setsid.
 */
import type { ProcessRunner } from "../shared/deps.ts";
import type { Tools } from "./service.ts";

/** The most one look at the process table may take: it only delays a restart. */
const PS_TIMEOUT_MS = 2000;

/** One process of the table. */
interface Row {
  pid: number;
  pgid: number;
  /** R, S, D, T, Z...: the first letter of ps's STAT. */
  state: string;
  name: string;
}

/** A certain verdict, and the facts that make it so. */
export interface Certainty {
  kind: "crash" | "hang";
  why: string;
}

async function table(runner: ProcessRunner, tools: Tools): Promise<Row[] | null> {
  const r = await runner.run(tools.ps, ["-e", "-o", "pid=,pgid=,stat=,comm="], {
    timeoutMs: PS_TIMEOUT_MS,
  });
  if (r.code !== 0 || r.timedOut) return null;
  return r.stdout.split("\n").flatMap((line) => {
    const [pid, pgid, stat, ...name] = line.trim().split(/\s+/);
    return pid && pgid && stat && name.length > 0
      ? [{ pid: Number(pid), pgid: Number(pgid), state: stat.charAt(0), name: name.join(" ") }]
      : [];
  });
}

/**
 * Whether the process table makes a failure certain. `crash`: the master named by the pid file is
 * gone or a zombie, and no other live master of `processName` exists (a restart by someone else
 * would have started one). `hang`: every process of the master's group is stopped (state T).
 * Null when nothing is certain, or the table cannot be read: the policy confirms as usual.
 */
export async function certainty(
  runner: ProcessRunner,
  tools: Tools,
  processName: string,
  masterPid: number | null,
  kind: "crash" | "hang",
): Promise<Certainty | null> {
  if (masterPid === null) return null;
  let rows: Row[] | null;
  try {
    rows = await table(runner, tools);
  } catch {
    return null;
  }
  if (rows === null) return null;
  const named = rows.filter((r) => r.name === processName);
  const master = rows.find((r) => r.pid === masterPid);
  if (kind === "crash") {
    const gone = master === undefined || master.state === "Z" || master.name !== processName;
    const otherMaster = named.some((r) => r.pid === r.pgid && r.state !== "Z");
    if (!gone || otherMaster) return null;
    return {
      kind,
      why: `master ${masterPid} is ${
        master === undefined || master.name !== processName ? "gone" : "a zombie"
      } and no other ${processName} master runs`,
    };
  }
  const pool = named.filter((r) => r.pgid === masterPid && r.state !== "Z");
  if (pool.length === 0 || pool.some((r) => r.state !== "T")) return null;
  return {
    kind,
    why: `all ${pool.length} ${processName} processes of master ${masterPid} are stopped`,
  };
}
