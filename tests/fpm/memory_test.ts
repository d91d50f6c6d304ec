import assert from "node:assert/strict";
import { memoryWarnings, poolMemory } from "../../src/fpm/memory.ts";
import type { ProcessInfo } from "../../src/fpm/evidence.ts";

const proc = (pid: number, ppid: number, rssKb: number): ProcessInfo => ({
  pid,
  ppid,
  pgid: 100,
  state: "S",
  cpuSeconds: 1,
  rssKb,
  ageSeconds: 60,
});

Deno.test("pool memory: every process summed, the largest worker (the master left out)", () => {
  const ps = [proc(100, 1, 300_000), proc(200, 100, 50_000), proc(201, 100, 80_000)];
  assert.deepEqual(poolMemory(ps, 100), { sumKb: 430_000, largestKb: 80_000, workers: 2 });
  assert.deepEqual(poolMemory(ps, null), { sumKb: 430_000, largestKb: 80_000, workers: 2 });
  assert.deepEqual(poolMemory([], 100), { sumKb: 0, largestKb: 0, workers: 0 });
});

Deno.test("memory warnings: above a limit only, each limit 0 for off", () => {
  const m = { sumKb: 2_000_000, largestKb: 300_000, workers: 10 };
  assert.deepEqual(memoryWarnings(m, { poolKb: 0, workerKb: 0 }), []);
  assert.deepEqual(memoryWarnings(m, { poolKb: 1024 * 1024, workerKb: 256 * 1024 }), [
    {
      kind: "pool_memory",
      message: "the pool's processes hold 1953 MB resident (limit 1024 MB, 10 workers)",
    },
    { kind: "worker_memory", message: "a worker holds 293 MB resident (limit 256 MB)" },
  ]);
  assert.deepEqual(memoryWarnings(m, { poolKb: 2_000_000, workerKb: 300_000 }), [], "not above");
});
