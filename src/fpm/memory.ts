/**
 * A pool's resident memory from the process table: every process of the pool summed, and its
 * largest worker. Memory is what ends a pool that grows (the OOM killer), and php-fpm's status
 * page says nothing of it.
 */
import type { ProcessInfo } from "./evidence.ts";

/** A pool's resident memory, in KiB. */
export interface PoolMemory {
  sumKb: number;
  /** The largest worker (the master excluded): what pm.max_children multiplies. */
  largestKb: number;
  workers: number;
}

/** Thresholds of the memory warnings in KiB; 0 turns one off. */
export interface MemoryLimits {
  poolKb: number;
  workerKb: number;
}

/** The memory of the pool whose master is `masterPid` (its workers are its children). */
export function poolMemory(
  processes: readonly ProcessInfo[],
  masterPid: number | null,
): PoolMemory {
  const workers = processes.filter((p) => masterPid === null ? p.ppid !== 1 : p.ppid === masterPid);
  return {
    sumKb: processes.reduce((sum, p) => sum + p.rssKb, 0),
    largestKb: Math.max(0, ...workers.map((p) => p.rssKb)),
    workers: workers.length,
  };
}

const mb = (kb: number) => `${Math.round(kb / 1024)} MB`;

/** The memory early warnings: the pool above `warn_pool_memory`, a worker above `warn_worker_memory`. */
export function memoryWarnings(
  m: PoolMemory,
  limits: MemoryLimits,
): { kind: "pool_memory" | "worker_memory"; message: string }[] {
  const out: { kind: "pool_memory" | "worker_memory"; message: string }[] = [];
  if (limits.poolKb > 0 && m.sumKb > limits.poolKb) {
    out.push({
      kind: "pool_memory",
      message: `the pool's processes hold ${mb(m.sumKb)} resident (limit ${
        mb(limits.poolKb)
      }, ${m.workers} workers)`,
    });
  }
  if (limits.workerKb > 0 && m.largestKb > limits.workerKb) {
    out.push({
      kind: "worker_memory",
      message: `a worker holds ${mb(m.largestKb)} resident (limit ${mb(limits.workerKb)})`,
    });
  }
  return out;
}
