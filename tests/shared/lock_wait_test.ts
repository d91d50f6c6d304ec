import assert from "node:assert/strict";
import { type HeldLock, waitForLock } from "../../src/shared/lock.ts";
import { FakeClock } from "../support/fakes.ts";

const START = 1_700_000_000_000;

/** A lock held by another until the `freeAt`-th try (never when null); records each try's time. */
function scripted(clock: FakeClock, freeAt: number | null) {
  const tries: number[] = [];
  const held: HeldLock = { path: "/l", say: () => Promise.resolve(), [Symbol.dispose]() {} };
  const take = () => {
    tries.push(clock.now() - START);
    return Promise.resolve(tries.length === freeAt ? held : null);
  };
  return { take, tries, held };
}

Deno.test("waitForLock: a free lock is taken at once, without a wait or a word", async () => {
  const clock = new FakeClock(START);
  const { take, tries, held } = scripted(clock, 1);
  let waited = 0;
  const got = await waitForLock({ take, clock, pollMs: 500, onWait: () => waited++ });
  assert.deepEqual(got, { lock: held, gaveUp: false });
  assert.deepEqual(tries, [0]);
  assert.deepEqual(clock.sleeps, []);
  assert.equal(waited, 0);
});

Deno.test("waitForLock: held, it says so once, sleeps the poll period and tries again", async () => {
  const clock = new FakeClock(START);
  const { take, tries, held } = scripted(clock, 3);
  const said: string[] = [];
  const got = await waitForLock({
    take,
    clock,
    pollMs: 500,
    onWait: () => said.push("waiting"),
    onSleep: () => said.push("sleep"),
  });
  assert.equal(got.lock, held);
  assert.deepEqual(tries, [0, 500, 1000]);
  assert.deepEqual(clock.sleeps, [500, 500]);
  assert.deepEqual(said, ["waiting", "sleep", "sleep"]);
});

Deno.test("waitForLock: no sleep begins once the deadline says there is no time left", async () => {
  const clock = new FakeClock(START);
  const { take, tries } = scripted(clock, null);
  const until = START + 1200;
  const got = await waitForLock({ take, clock, pollMs: 500, timeLeft: (now) => now < until });
  assert.deepEqual(got, { lock: null, gaveUp: false });
  // tries at 0, 500, 1000; at 1500 the deadline has passed: no fourth sleep
  assert.deepEqual(tries, [0, 500, 1000, 1500]);
  assert.deepEqual(clock.sleeps, [500, 500, 500]);
});

Deno.test("waitForLock: the poll period may shrink to the time left (the cron form's)", async () => {
  const clock = new FakeClock(START);
  const { take, tries } = scripted(clock, null);
  const endsAt = START + 1700;
  const got = await waitForLock({
    take,
    clock,
    pollMs: (now) => Math.min(500, endsAt - now),
    // a 200 ms probe must still fit
    timeLeft: (now) => now + 200 <= endsAt,
  });
  assert.equal(got.lock, null);
  assert.deepEqual(clock.sleeps, [500, 500, 500, 200]);
  assert.deepEqual(tries, [0, 500, 1000, 1500, 1700]);
});

Deno.test("waitForLock: giveUp ends the wait at once, at the first try or a later one", async () => {
  for (const heldForGoodFrom of [1, 3]) {
    const clock = new FakeClock(START);
    const { take, tries } = scripted(clock, null);
    let asked = 0;
    let waited = 0;
    const got = await waitForLock({
      take,
      clock,
      pollMs: 500,
      giveUp: () => Promise.resolve(++asked >= heldForGoodFrom),
      onWait: () => waited++,
    });
    assert.deepEqual(got, { lock: null, gaveUp: true });
    assert.equal(tries.length, heldForGoodFrom);
    assert.equal(asked, heldForGoodFrom);
    // held for good at the first try: no "waiting" said
    assert.equal(waited, heldForGoodFrom === 1 ? 0 : 1);
    assert.equal(clock.sleeps.length, heldForGoodFrom - 1);
  }
});

Deno.test("waitForLock: a lock taken is never given up, whatever giveUp would say", async () => {
  const clock = new FakeClock(START);
  const { take, held } = scripted(clock, 2);
  const got = await waitForLock({ take, clock, pollMs: 500, giveUp: () => Promise.resolve(false) });
  assert.deepEqual(got, { lock: held, gaveUp: false });
});

Deno.test("waitForLock: an abort ends the wait after the try under way; sleeps get the signal", async () => {
  const clock = new FakeClock(START);
  const stop = new AbortController();
  const signals: (AbortSignal | undefined)[] = [];
  const sleep = clock.sleep;
  clock.sleep = (ms, signal) => {
    signals.push(signal);
    return sleep(ms, signal);
  };
  const { take, tries } = scripted(clock, null);
  let sleeps = 0;
  const got = await waitForLock({
    take,
    clock,
    pollMs: 5000,
    signal: stop.signal,
    onSleep: () => {
      if (++sleeps === 2) stop.abort();
    },
  });
  assert.deepEqual(got, { lock: null, gaveUp: false });
  // the second sleep was aborted (the fake returns at once); one more try, then no more
  assert.deepEqual(tries, [0, 5000, 5000]);
  assert.deepEqual(signals, [stop.signal, stop.signal]);
});

Deno.test("waitForLock: without a signal, sleeps are called with the period alone", async () => {
  const clock = new FakeClock(START);
  const args: number[] = [];
  const sleep = clock.sleep;
  clock.sleep = (...a: [number, AbortSignal?]) => {
    args.push(a.length);
    return sleep(...a);
  };
  const { take } = scripted(clock, 2);
  await waitForLock({ take, clock, pollMs: 500 });
  assert.deepEqual(args, [1]);
});
