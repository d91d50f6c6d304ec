import assert from "node:assert/strict";
import { fitsInRun, nextDue, type Timing } from "../../src/run/schedule.ts";
import { settleMs } from "../../src/config/policy_settings.ts";

/**
 * Simulates a cron run: each probe takes `probeMs(i)`; `confirmAfter` probes ask for a
 * confirmation; a restart taking `restartMs` follows probe `restartAfter`.
 */
function simulate(
  timeoutMs: number,
  probeMs: (i: number) => number,
  opts: {
    restartAfter?: number;
    restartMs?: number;
    runMs?: number;
    confirmAfter?: number[];
    intervalMs?: number;
  } = {},
) {
  const run = { startedAt: 0, runMs: opts.runMs ?? 60_000 };
  const timing: Timing = {
    intervalMs: opts.intervalMs ?? timeoutMs,
    confirmDelayMs: 1000,
    settleMs: settleMs(timeoutMs),
  };
  let now = 0;
  let dueAt = 0;
  const starts: number[] = [];
  for (let i = 0; fitsInRun(dueAt, run, timeoutMs); i++) {
    now = Math.max(now, dueAt);
    starts.push(now);
    now += probeMs(i);
    let restartEndedAt: number | null = null;
    if (i === opts.restartAfter) {
      now += opts.restartMs ?? 0;
      restartEndedAt = now;
    }
    dueAt = nextDue(
      { dueAt, now, confirm: opts.confirmAfter?.includes(i) ?? false, restartEndedAt },
      timing,
    );
  }
  return { starts, endedAt: now };
}

Deno.test("settle after a restart: max(timeout, 10 s)", () => {
  assert.equal(settleMs(5000), 10_000);
  assert.equal(settleMs(30_000), 30_000);
});

Deno.test("floor(60 / timeout) probes per minute", () => {
  for (const [timeout, probes] of [[5, 12], [7, 8], [60, 1], [1, 60], [13, 4]] as const) {
    assert.equal(simulate(timeout * 1000, () => 3).starts.length, probes, `timeout ${timeout}`);
  }
});

Deno.test("healthy instant probes: 12 probes at 0, 5, ..., 55 s", () => {
  const { starts } = simulate(5000, () => 3);
  assert.deepEqual(starts, Array.from({ length: 12 }, (_, i) => i * 5000));
});

Deno.test("a probe's duration is taken off the wait, without drift", () => {
  const { starts, endedAt } = simulate(5000, () => 1200);
  assert.deepEqual(starts, Array.from({ length: 12 }, (_, i) => i * 5000));
  assert.ok(endedAt <= 60_000, `ended at ${endedAt}`);
});

Deno.test("timeouts back to back still end within the minute", () => {
  const { starts, endedAt } = simulate(5000, () => 5000);
  assert.equal(starts.length, 12);
  assert.equal(endedAt, 60_000);
});

Deno.test("timeouts longer than the interval (a file's interval = 1) still end within the minute", () => {
  const { starts, endedAt } = simulate(5000, () => 5000, { intervalMs: 1000 });
  assert.equal(starts.length, 12, "back to back, never catching up on due times in the past");
  assert.equal(endedAt, 60_000);
});

Deno.test("a 5xx is confirmed after 1 s, then the interval resumes from there", () => {
  const { starts } = simulate(5000, () => 10, { confirmAfter: [2] });
  assert.deepEqual(starts.slice(0, 5), [0, 5000, 10_000, 11_010, 16_010]);
});

Deno.test("after a restart the next probe waits max(timeout, 10 s); late probes are dropped", () => {
  // probe at 10 s fails, restart takes 8 s: next at 18 + 10 = 28 s, then 33, 38, ..., 53
  const { starts, endedAt } = simulate(5000, () => 10, { restartAfter: 2, restartMs: 8000 });
  assert.deepEqual(starts.slice(0, 4), [0, 5000, 10_000, 28_010]);
  assert.equal(starts.at(-1), 53_010);
  assert.ok(endedAt <= 60_000);
  for (const s of starts) assert.ok(s + 5000 <= 60_000, `probe at ${s} could not finish in time`);
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
