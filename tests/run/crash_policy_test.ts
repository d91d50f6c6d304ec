/** When crashing children make an incident: the threshold, one incident, its quiet end. */
import assert from "node:assert/strict";
import type { ChildDeath } from "../../src/fpm/child_deaths.ts";
import { judgeCrashes, MAX_CRASH_POOLS, type PoolCrashes } from "../../src/run/crash_policy.ts";

const LIMITS = { count: 5, windowMs: 60_000 };
const segv = (at: number, pool = "www"): ChildDeath => ({
  at,
  pool,
  pid: 1000 + at,
  signal: 11,
  name: "SIGSEGV",
  core: false,
});

Deno.test("crash policy: the 5th crash within 60 s opens one incident; later ones are counted in it", () => {
  let pools: Record<string, PoolCrashes> = {};
  let d = judgeCrashes(pools, [segv(1000), segv(2000), segv(3000), segv(4000)], 5000, LIMITS);
  assert.equal(d.opened.length, 0, "4 are not past 5");
  pools = d.pools;
  d = judgeCrashes(pools, [segv(5000)], 6000, LIMITS);
  assert.equal(d.opened.length, 1);
  assert.equal(d.opened[0]!.pool, "www");
  assert.deepEqual(d.opened[0]!.crashes.map((c) => c.at), [1000, 2000, 3000, 4000, 5000]);
  assert.deepEqual(d.opened[0]!.incident.signals, { SIGSEGV: 5 });
  assert.equal(d.opened[0]!.incident.id, "19700101-000001-000", "from the first crash");
  pools = d.pools;
  d = judgeCrashes(
    pools,
    [segv(7000), segv(8000), { ...segv(9000), name: "SIGABRT", signal: 6 }],
    9000,
    LIMITS,
  );
  assert.equal(d.opened.length, 0, "alerted once");
  assert.deepEqual(d.pools["www"]!.incident!.signals, { SIGSEGV: 7, SIGABRT: 1 });
  assert.equal(d.pools["www"]!.incident!.lastAt, 9000);
});

Deno.test("crash policy: crashes further apart than the window, and kills by others, open nothing", () => {
  let pools: Record<string, PoolCrashes> = {};
  for (let i = 0; i < 10; i++) {
    const d = judgeCrashes(pools, [segv(i * 20_000)], i * 20_000, LIMITS);
    assert.equal(d.opened.length, 0, `crash ${i}`);
    pools = d.pools;
  }
  const killed = [9, 15, 3].flatMap((signal) =>
    [1, 2, 3, 4, 5, 6].map((i) => ({ ...segv(500_000 + i), signal, name: "SIGKILL" }))
  );
  assert.equal(judgeCrashes({}, killed, 500_010, LIMITS).opened.length, 0);
  assert.equal(
    judgeCrashes({}, [1, 2, 3, 4, 5].map((i) => segv(i)), 10, { ...LIMITS, count: 0 }).opened
      .length,
    0,
    "off",
  );
});

Deno.test("crash policy: each pool on its own; two incidents opened at once get two ids", () => {
  const deaths = [1, 2, 3, 4, 5].flatMap((i) => [segv(i * 100, "shop"), segv(i * 100, "blog")]);
  const d = judgeCrashes({}, deaths, 1000, LIMITS);
  assert.deepEqual(d.opened.map((o) => o.pool), ["shop", "blog"]);
  assert.notEqual(d.opened[0]!.incident.id, d.opened[1]!.incident.id);
});

Deno.test("crash policy: the incident resolves after 5 quiet minutes, by our clock", () => {
  const open = judgeCrashes({}, [1, 2, 3, 4, 5].map((i) => segv(i)), 10_000, LIMITS);
  let d = judgeCrashes(open.pools, [], 10_000 + 299_999, LIMITS);
  assert.equal(d.resolved.length, 0);
  d = judgeCrashes(open.pools, [segv(200_000)], 200_000, LIMITS);
  d = judgeCrashes(d.pools, [], 200_000 + 299_999, LIMITS);
  assert.equal(d.resolved.length, 0, "a crash since keeps it open");
  d = judgeCrashes(d.pools, [], 200_000 + 300_000, LIMITS);
  assert.equal(d.resolved.length, 1);
  assert.deepEqual(d.resolved[0]!.incident.signals, { SIGSEGV: 6 });
  assert.deepEqual(d.pools, {}, "forgotten");
  const again = judgeCrashes(
    d.pools,
    [1, 2, 3, 4, 5].map((i) => segv(600_000 + i)),
    600_010,
    LIMITS,
  );
  assert.equal(again.opened.length, 1, "a new loop is a new incident");
});

Deno.test("crash policy: the pools remembered are bounded, open incidents kept first", () => {
  const open = judgeCrashes({}, [1, 2, 3, 4, 5].map((i) => segv(i, "shop")), 10, LIMITS);
  const many = Array.from({ length: 200 }, (_, i) => segv(100 + i, `p${i}`));
  const d = judgeCrashes(open.pools, many, 400, LIMITS);
  assert.equal(Object.keys(d.pools).length, MAX_CRASH_POOLS);
  assert.notEqual(d.pools["shop"]?.incident, null);
});
