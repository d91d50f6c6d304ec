/**
 * A pool's resident memory from the process table: every process of the pool summed, and its
 * largest worker. Memory is what ends a pool that grows (the OOM killer), and php-fpm's status
 * page says nothing of it.
 */
import type { ProcessInfo } from "./evidence.ts";
import { megabytesOfKb as mb } from "../shared/memory_units.ts";

/** A pool's resident memory, in KiB. */
export interface PoolMemory {
  sumKb: number;
  /** The largest worker (the master excluded): what pm.max_children multiplies. */
  largestKb: number;
  workers: number;
  /**
   * Each pool's workers, by the pool their title names, when a master serves several pools
   * (empty when the titles name none, or one pool only).
   */
  byPool: Record<string, { sumKb: number; largestKb: number; workers: number }>;
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
  const byPool: PoolMemory["byPool"] = {};
  for (const w of workers) {
    if (w.pool === undefined) continue;
    const was = byPool[w.pool] ?? { sumKb: 0, largestKb: 0, workers: 0 };
    byPool[w.pool] = {
      sumKb: was.sumKb + w.rssKb,
      largestKb: Math.max(was.largestKb, w.rssKb),
      workers: was.workers + 1,
    };
  }
  return {
    sumKb: processes.reduce((sum, p) => sum + p.rssKb, 0),
    largestKb: Math.max(0, ...workers.map((p) => p.rssKb)),
    workers: workers.length,
    byPool: Object.keys(byPool).length > 1 ? byPool : {},
  };
}

/** The memory early warnings: the pool above `warn_pool_memory`, a worker above `warn_worker_memory`. */
export function memoryWarnings(
  m: PoolMemory,
  limits: MemoryLimits,
): { kind: string; message: string }[] {
  const out: { kind: string; message: string }[] = [];
  // with several pools each is held to the limits on its own, and named
  const pools = Object.keys(m.byPool).length > 0
    ? Object.entries(m.byPool).map(([name, p]) => ({ ...p, name }))
    : [{ ...m, name: null }];
  for (const p of pools) {
    const which = p.name === null ? "the pool's" : `pool ${p.name}'s`;
    const kind = (k: string) => p.name === null ? k : `${k} ${p.name}`;
    if (limits.poolKb > 0 && p.sumKb > limits.poolKb) {
      out.push({
        kind: kind("pool_memory"),
        message: `${which} processes hold ${mb(p.sumKb)} resident (limit ${
          mb(limits.poolKb)
        }, ${p.workers} workers)`,
      });
    }
    if (limits.workerKb > 0 && p.largestKb > limits.workerKb) {
      out.push({
        kind: kind("worker_memory"),
        message: `a worker${p.name === null ? "" : ` of pool ${p.name}`} holds ${
          mb(p.largestKb)
        } resident (limit ${mb(limits.workerKb)})`,
      });
    }
  }
  return out;
}
