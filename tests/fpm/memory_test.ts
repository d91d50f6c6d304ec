import assert from "node:assert/strict";
import { memoryWarnings, poolMemory } from "../../src/fpm/memory.ts";
import type { ProcessInfo } from "../../src/fpm/evidence.ts";

const proc = (pid: number, ppid: number, rssKb: number, pool?: string): ProcessInfo => ({
  pid,
  ppid,
  pgid: 100,
  state: "S",
  cpuSeconds: 1,
  rssKb,
  ageSeconds: 60,
  ...(pool === undefined ? {} : { pool }),
});

Deno.test("pool memory: every process summed, the largest worker (the master left out)", () => {
  const ps = [proc(100, 1, 300_000), proc(200, 100, 50_000), proc(201, 100, 80_000)];
  const whole = { sumKb: 430_000, largestKb: 80_000, workers: 2, byPool: {} };
  assert.deepEqual(poolMemory(ps, 100), whole);
  assert.deepEqual(poolMemory(ps, null), whole);
  assert.deepEqual(poolMemory([], 100), { sumKb: 0, largestKb: 0, workers: 0, byPool: {} });
  // one pool named by the titles: no split to make
  const one = [proc(100, 1, 300_000), proc(200, 100, 50_000, "www"), proc(201, 100, 80_000, "www")];
  assert.deepEqual(poolMemory(one, 100).byPool, {});
});

Deno.test("pool memory: a master's several pools each summed, by their workers' titles", () => {
  const ps = [
    proc(100, 1, 30_000),
    proc(200, 100, 50_000, "www"),
    proc(201, 100, 80_000, "www"),
    proc(210, 100, 400_000, "shop"),
  ];
  assert.deepEqual(poolMemory(ps, 100).byPool, {
    www: { sumKb: 130_000, largestKb: 80_000, workers: 2 },
    shop: { sumKb: 400_000, largestKb: 400_000, workers: 1 },
  });
  const warnings = memoryWarnings(poolMemory(ps, 100), { poolKb: 300_000, workerKb: 256 * 1024 });
  assert.deepEqual(warnings, [
    {
      kind: "pool_memory shop",
      message: "pool shop's processes hold 391 MB resident (limit 293 MB, 1 workers)",
    },
    {
      kind: "worker_memory shop",
      message: "a worker of pool shop holds 391 MB resident (limit 256 MB)",
    },
  ], "each pool on its own: www is within both");
});

Deno.test("memory warnings: above a limit only, each limit 0 for off", () => {
  const m = { sumKb: 2_000_000, largestKb: 300_000, workers: 10, byPool: {} };
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
