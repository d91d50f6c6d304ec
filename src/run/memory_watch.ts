/**
 * The pool's resident memory, read from the process table now and then: the metrics' gauges, and
 * the early warnings of warn_pool_memory and warn_worker_memory.
 */
import { LOOK_TIMEOUT_MS, type MasterView } from "../act/master.ts";
import { readProcesses } from "../act/processes.ts";
import { processInfos } from "../fpm/evidence.ts";
import { memoryWarnings, poolMemory } from "../fpm/memory.ts";
import { megabytesOfKb } from "../shared/memory_units.ts";
import type { TargetContext } from "./context.ts";

/** The process table is read for the pool's memory at most this often. */
const MEMORY_READ_MS = 15_000;

/**
 * Reads the pool's resident memory from the process table (at most every
 * {@link MEMORY_READ_MS}), for its metrics and the memory warnings: only when one of those is
 * asked for, so a plain watch runs no command while all is well. `view`: this step's master;
 * `warnOnce`: the prober's early warning.
 */
export async function checkMemory(
  ctx: TargetContext,
  view: MasterView,
  warnOnce: (warning: { kind: string; message: string }, details: string[]) => void,
): Promise<void> {
  const { target, deps, memory, cfg } = ctx;
  const wanted = target.memoryWarn.poolKb > 0 || target.memoryWarn.workerKb > 0 ||
    cfg.metricsFile !== null || cfg.metricsListen !== null;
  const now = deps.clock.now();
  if (!wanted || (ctx.memoryReadAt !== undefined && now - ctx.memoryReadAt < MEMORY_READ_MS)) {
    return;
  }
  ctx.memoryReadAt = now;
  const master = view.live;
  // the workers' titles too: each pool's memory
  const rows = await readProcesses(
    deps.runner,
    cfg.tools.ps,
    target.fpm.processName,
    LOOK_TIMEOUT_MS,
    "all",
  );
  const processes = processInfos(rows ?? [], master);
  if (processes.length === 0) return;
  const m = poolMemory(processes, master);
  const byPool = Object.fromEntries(
    Object.entries(m.byPool).map((
      [name, p],
    ) => [name, { sumKb: p.sumKb, largestKb: p.largestKb }]),
  );
  memory.counters = {
    ...memory.counters,
    poolMemory: {
      sumKb: m.sumKb,
      largestKb: m.largestKb,
      ...(Object.keys(byPool).length === 0 ? {} : { byPool }),
    },
  };
  for (const warning of memoryWarnings(m, target.memoryWarn)) {
    warnOnce(warning, [
      `Processes: ${processes.length}, the largest worker ${megabytesOfKb(m.largestKb)}`,
      ...Object.entries(m.byPool).map(([name, p]) =>
        `  pool ${name}: ${p.workers} workers, ${megabytesOfKb(p.sumKb)}, the largest ${
          megabytesOfKb(p.largestKb)
        }`
      ),
      "Nothing was restarted: this is an early warning.",
    ]);
  }
}
