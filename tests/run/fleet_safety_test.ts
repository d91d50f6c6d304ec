/**
 * The fleet's restart cap against a shared cause that lasts, a forged listing, a stop during the
 * slot wait, a flapping share and a refusing etcd: fake etcd, and a clock that moves only when
 * the test moves it.
 */
import assert from "node:assert/strict";
import type { FleetSettings } from "../../src/config/fleet_settings.ts";
import { FleetLink } from "../../src/run/fleet.ts";
import { FleetSession } from "../../src/run/fleet_session.ts";
import type { Clock } from "../../src/shared/deps.ts";
import { captureLogs, testDeps } from "../support/fakes.ts";
import { FakeEtcd, fleetSettings, keptAlerts } from "../support/fake_etcd.ts";

/** A clock whose sleeps end only when the test advances it past them (or their signal aborts). */
class ManualClock implements Clock {
  time = 1_700_000_000_000;
  private waiters: { at: number; wake: () => void }[] = [];
  now = (): number => this.time;
  sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const waiter = {
        at: this.time + ms,
        wake: () => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          signal?.removeEventListener("abort", waiter.wake);
          resolve();
        },
      };
      this.waiters.push(waiter);
      signal?.addEventListener("abort", waiter.wake, { once: true });
    });
  /** Moves time on by `ms`, waking the sleeps due, and lets them run. */
  async advance(ms: number): Promise<void> {
    this.time += ms;
    for (const w of this.waiters.filter((w) => w.at <= this.time)) w.wake();
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  }
}

/** The fleet these tests use: half the hosts failing holds, a minute's slot wait. */
function settings(host: string, over: Partial<FleetSettings> = {}): FleetSettings {
  return fleetSettings(host, {
    sharedCauseShare: 0.5,
    slotWaitMs: 60_000,
    maxHoldMs: 300_000,
    ...over,
  });
}

function setup(over: Partial<FleetSettings> = {}) {
  const etcd = new FakeEtcd();
  const clock = new ManualClock();
  const links = ["a", "b", "c"].map((h) =>
    new FleetLink(settings(h, over), testDeps({ clock, etcdPost: etcd.post } as never))
  );
  return { etcd, clock, links };
}

/** Another host's slot, taken before any of ours (create revision 0). */
function slotOfB(etcd: FakeEtcd): void {
  etcd.kv.set("/php-relaunch/slots/b/php", { value: "b", create: 0, lease: "0" });
}

/** Whether `p` settled, after letting it run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => done = true, () => done = true);
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
  return done;
}

Deno.test("fleet: a certain failure is never held by a shared cause, and still waits for its slot", async () => {
  const logs = captureLogs();
  const { etcd, clock, links } = setup();
  const t = keptAlerts();
  let restarted = 0;
  const work = () => Promise.resolve(++restarted);
  try {
    for (const link of links) await link.observe("php", true, t);
    // uncertain: held
    assert.equal(await links[0]!.restart("php", t, work, { certain: false }), null);
    // certain (the master gone): not held, but one at a time: b's slot goes first
    slotOfB(etcd);
    const certain = links[0]!.restart("php", t, work, { certain: true });
    await clock.advance(1000);
    assert.equal(await settled(certain), false, "waits for b's slot");
    assert.equal(restarted, 0);
    etcd.kv.delete("/php-relaunch/slots/b/php");
    await clock.advance(250);
    assert.equal(await certain, 1);
    assert.ok(
      logs.lines().some((l) => /but this failure is certain/.test(l)),
      logs.lines().join("\n"),
    );
  } finally {
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: restarts held by a shared cause resume after max_hold, through the slots", async () => {
  const logs = captureLogs();
  const { clock, links } = setup({ maxHoldMs: 60_000 });
  const t = keptAlerts();
  let restarted = 0;
  const work = () => Promise.resolve(++restarted);
  try {
    for (const link of links) await link.observe("php", true, t);
    assert.equal(await links[0]!.restart("php", t, work), null);
    await clock.advance(59_000);
    for (const link of links) await link.observe("php", true, t);
    assert.equal(await links[0]!.restart("php", t, work), null, "59 s: still held");
    await clock.advance(1000);
    assert.equal(await links[0]!.restart("php", t, work), 1, "60 s: max_hold, restarted");
    assert.equal(await links[0]!.restart("php", t, work), 2, "and the next restarts too");
    assert.equal(logs.lines().filter((l) => /Restarts held 60 s \(max_hold\)/.test(l)).length, 1);
    // healthy again, then a new shared cause: held anew, for max_hold again
    await links[0]!.observe("php", false, t);
    await links[0]!.observe("php", true, t);
    assert.equal(await links[0]!.restart("php", t, work), null);
  } finally {
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: a forged listing of 1000 failing hosts counts as the fleet's size, 20 names listed", async () => {
  const logs = captureLogs();
  const { etcd, links } = setup();
  const t = keptAlerts();
  for (let i = 0; i < 1000; i++) {
    etcd.kv.set(`/php-relaunch/failing/h${String(i).padStart(4, "0")}/php`, {
      value: "x",
      create: 0,
      lease: "0",
    });
  }
  try {
    await links[0]!.observe("php", true, t);
    assert.equal(await links[0]!.restart("php", t, () => Promise.resolve(1)), null);
    const held = logs.lines().find((l) => /^Restart held/.test(l)) ?? "";
    assert.match(held, /^Restart held: 3 of 3 hosts of the fleet fail at once \(a, h0000, /);
    assert.match(held, /h0018 \+981 more\)/);
    assert.equal(/\((.*?)\)/.exec(held)![1]!.split(", ").length, 20);
    assert.equal(t.alerts.length, 1);
    assert.match(t.alerts[0]!, /3 of 3 hosts fail at once \(a, h0000, .* \+981 more\)/);
    assert.ok(t.alerts[0]!.length < 500, t.alerts[0]);
  } finally {
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: a stop during the slot wait lets the slot go, and does not restart", async () => {
  captureLogs();
  const { etcd, clock, links } = setup();
  const t = keptAlerts();
  let restarted = 0;
  const stop = new AbortController();
  try {
    await links[0]!.observe("php", true, t);
    slotOfB(etcd);
    const waiting = links[0]!.restart("php", t, () => Promise.resolve(++restarted), {
      certain: false,
      signal: stop.signal,
    });
    await clock.advance(1000);
    assert.deepEqual(etcd.keys("/php-relaunch/slots/"), [
      "/php-relaunch/slots/b/php",
      "/php-relaunch/slots/a/php",
    ]);
    stop.abort();
    assert.equal(await settled(waiting), true, "the stop ends the wait at once");
    assert.equal(await waiting, null);
    assert.equal(restarted, 0);
    assert.deepEqual(etcd.keys("/php-relaunch/slots/"), ["/php-relaunch/slots/b/php"]);
    // stopped before it asks: nothing at all
    assert.equal(
      await links[0]!.restart("php", t, () => Promise.resolve(++restarted), {
        certain: true,
        signal: stop.signal,
      }),
      null,
    );
    assert.equal(restarted, 0);
  } finally {
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: a flapping share alerts once, resolves after 60 s below, and alerts at most every 5 min", async () => {
  const logs = captureLogs();
  const { clock, links } = setup();
  const t = keptAlerts();
  /** One step of every host: b and c failing (2 of 3, a shared cause), or all healthy. */
  const step = async (shared: boolean) => {
    await links[0]!.observe("php", false, t);
    await links[1]!.observe("php", shared, t);
    await links[2]!.observe("php", shared, t);
    await clock.advance(1000);
  };
  try {
    for (let i = 0; i < 20; i++) await step(i % 3 === 0);
    assert.deepEqual(t.alerts.map((a) => a.split(":")[0]), ["PHP fleet-wide failure"]);
    // below the threshold for 60 s: resolved, once
    for (let i = 0; i < 62; i++) await step(false);
    assert.deepEqual(t.alerts.map((a) => a.split(":")[0]), [
      "PHP fleet-wide failure",
      "PHP fleet-wide failure resolved",
    ]);
    // flapping again within 5 min of the first alert: said in the log, not alerted
    for (let i = 0; i < 20; i++) await step(i % 3 === 0);
    for (let i = 0; i < 62; i++) await step(false);
    assert.equal(t.alerts.length, 2, t.alerts.join("\n"));
    assert.ok(logs.lines().some((l) => /Alerted less than 5 min ago: not again/.test(l)));
    // 5 min after: alerted again, and its resolution
    await clock.advance(300_000);
    await step(true);
    for (let i = 0; i < 62; i++) await step(false);
    assert.deepEqual(t.alerts.map((a) => a.split(":")[0]).slice(2), [
      "PHP fleet-wide failure",
      "PHP fleet-wide failure resolved",
    ]);
  } finally {
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: a refusing etcd keeps no keepalive per step, and is said once, and once when it accepts", async () => {
  const logs = captureLogs();
  const etcd = new FakeEtcd();
  const clock = new ManualClock();
  const session = new FleetSession(
    settings("a"),
    testDeps({ clock, etcdPost: etcd.post } as never),
  );
  etcd.refuse.add("/v3/kv/put");
  const put = () =>
    session.ask(async () => {
      await session.client.put("/php-relaunch/failing/a/php", "x", await session.leaseId());
      return true;
    });
  try {
    for (let i = 0; i < 20; i++) {
      assert.equal(await put(), undefined);
      await clock.advance(1000);
    }
    assert.ok(session.keeping <= 1, `${session.keeping} keepalive loops`);
    assert.equal(logs.lines().filter((l) => /^etcd refused/.test(l)).length, 1);
    etcd.refuse.clear();
    assert.equal(await put(), true);
    assert.equal(await put(), true);
    assert.equal(session.keeping, 1);
    assert.equal(logs.lines().filter((l) => /etcd answers again/.test(l)).length, 1);
  } finally {
    await session.close();
  }
});
