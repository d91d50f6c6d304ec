import assert from "node:assert/strict";
import { COUNTERS_SAVE_MS, PacedSaves } from "../../src/run/paced_saves.ts";
import { freshMemory, type Memory, type StateStore } from "../../src/run/state.ts";
import { freshCrashMemory } from "../../src/run/crash_policy.ts";
import { FakeClock } from "../support/fakes.ts";

function countingStore(): StateStore & { saved: string[] } {
  const saved: string[] = [];
  return {
    saved,
    load: () => Promise.resolve(freshMemory()),
    save(memory: Memory) {
      saved.push(JSON.stringify(memory));
      return Promise.resolve();
    },
  };
}

/** A healthy probe's counting: the counters and the last probe change, nothing else. */
function probed(memory: Memory, at: number): void {
  memory.counters = { ...memory.counters };
  memory.counters.probes = { ...memory.counters.probes, "healthy 200": at };
  memory.lastProbe = { at, label: "200", verdict: "healthy", ms: 3 };
  memory.state = { ...memory.state, successes: memory.state.successes + 1 };
}

Deno.test("paced saves: a probe's counting is written at most every 15 s, a decision at once, the rest at the end", async () => {
  const clock = new FakeClock(1_000_000);
  const store = countingStore();
  const saves = new PacedSaves(store, clock);
  const memory = freshMemory();
  // the first save is written: nothing was
  probed(memory, clock.now());
  await saves.save(memory);
  assert.equal(store.saved.length, 1);
  // a probe a second for 14 s: counting only, kept
  for (let s = 1; s < 15; s++) {
    clock.advance(1000);
    probed(memory, clock.now());
    await saves.save(memory);
  }
  assert.equal(store.saved.length, 1, "14 healthy probes wrote nothing");
  // 15 s after the last write: the counting is written
  clock.advance(1000);
  probed(memory, clock.now());
  await saves.save(memory);
  assert.equal(store.saved.length, 2);
  // a failure counted by the policy is a decision: written at once
  clock.advance(1000);
  memory.state = { ...memory.state, failures: 1 };
  await saves.save(memory);
  assert.equal(store.saved.length, 3);
  assert.equal(JSON.parse(store.saved[2]!).state.failures, 1);
  // where the error log was read decides what the next run reads: a decision too
  clock.advance(1000);
  memory.childCrashes = { ...freshCrashMemory(), journal: { cursor: "s=1" } as never };
  await saves.save(memory);
  assert.equal(store.saved.length, 4);
  // counting kept, then written by the flush at the loop's end; a second flush writes nothing
  clock.advance(1000);
  probed(memory, clock.now());
  await saves.save(memory);
  assert.equal(store.saved.length, 4);
  await saves.flush();
  assert.equal(store.saved.length, 5);
  assert.equal(JSON.parse(store.saved[4]!).lastProbe.at, clock.now());
  await saves.flush();
  assert.equal(store.saved.length, 5);
  // while an incident is open, each healthy probe brings its end nearer: written at once
  memory.state = { ...memory.state, incident: { kind: "php_down", since: clock.now() } as never };
  await saves.save(memory);
  assert.equal(store.saved.length, 6);
  clock.advance(1000);
  probed(memory, clock.now());
  await saves.save(memory);
  assert.equal(store.saved.length, 7);
  assert.equal(COUNTERS_SAVE_MS, 15_000);
});
