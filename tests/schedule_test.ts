import assert from "node:assert/strict";
import { nextProbeAt, planRun, settleMs } from "../src/schedule.ts";

/** Simulates a run: each probe takes `probeMs(i)`; restarts (taking `restartMs`) after probe `restartAfter`. */
function simulate(
  timeoutMs: number,
  probeMs: (i: number) => number,
  opts: { restartAfter?: number; restartMs?: number; runMs?: number } = {},
) {
  const plan = planRun(timeoutMs, opts.runMs);
  const startedAt = 0;
  let now = startedAt;
  let dueAt = startedAt;
  const starts: number[] = [];
  const ends: number[] = [];
  for (let probesDone = 0;;) {
    starts.push(now);
    now += probeMs(probesDone);
    ends.push(now);
    let restartEndedAt: number | null = null;
    if (probesDone === opts.restartAfter) {
      now += opts.restartMs ?? 0;
      restartEndedAt = now;
    }
    probesDone++;
    const next = nextProbeAt(plan, { startedAt, probesDone }, { dueAt, restartEndedAt });
    if (next === null) break;
    dueAt = next;
    now = Math.max(now, next);
  }
  return { plan, starts, ends, endedAt: now };
}

Deno.test("planRun: floor(60 / timeout) probes, the timeout apart", () => {
  assert.deepEqual(planRun(5000), { probes: 12, intervalMs: 5000, lastStartOffsetMs: 55_000 });
  assert.equal(planRun(7000).probes, 8);
  assert.equal(planRun(60_000).probes, 1);
  assert.equal(planRun(1000).probes, 60);
  assert.equal(planRun(5000, 10_000).probes, 2);
});

Deno.test("settle after a restart: max(timeout, 10 s)", () => {
  assert.equal(settleMs(5000), 10_000);
  assert.equal(settleMs(30_000), 30_000);
});

Deno.test("healthy instant probes: 12 probes at 0, 5, ..., 55 s", () => {
  const { starts } = simulate(5000, () => 3);
  assert.deepEqual(starts, Array.from({ length: 12 }, (_, i) => i * 5000));
});

Deno.test("a probe's duration is subtracted from the wait, without drift", () => {
  const { starts, endedAt } = simulate(5000, () => 1200);
  assert.deepEqual(starts, Array.from({ length: 12 }, (_, i) => i * 5000));
  assert.ok(endedAt <= 60_000, `ended at ${endedAt}`);
});

Deno.test("timeouts back to back still end within the minute", () => {
  const { starts, endedAt } = simulate(5000, () => 5000);
  assert.equal(starts.length, 12);
  assert.equal(endedAt, 60_000);
});

Deno.test("after a restart the next probe waits max(timeout, 10 s) and late probes are dropped", () => {
  // probe at 10 s fails, restart takes 8 s: next at 18 + 10 = 28 s, then 33, 38, ..., 53
  const { starts, endedAt } = simulate(5000, () => 10, { restartAfter: 2, restartMs: 8000 });
  assert.deepEqual(starts.slice(0, 4), [0, 5000, 10_000, 28_010]);
  assert.equal(starts.at(-1), 53_010);
  assert.ok(endedAt <= 60_000);
  for (const s of starts) assert.ok(s <= 55_000, `probe at ${s} could not finish in the minute`);
});

Deno.test("a restart that ends late in the minute ends the run", () => {
  const { starts } = simulate(5000, () => 10, { restartAfter: 9, restartMs: 5000 });
  assert.equal(starts.length, 10);
});

Deno.test("mcron every 10 s with a 5 s timeout: two probes per run", () => {
  const { starts, endedAt } = simulate(5000, () => 5000, { runMs: 10_000 });
  assert.deepEqual(starts, [0, 5000]);
  assert.equal(endedAt, 10_000);
});
