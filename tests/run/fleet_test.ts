import assert from "node:assert/strict";
import type { FleetSettings } from "../../src/config/fleet_settings.ts";
import { ETCD_RETRY_MS, FleetLink } from "../../src/run/fleet.ts";
import { realDeps } from "../../src/real.ts";
import type { Clock } from "../../src/shared/deps.ts";
import { captureLogs, testDeps } from "../support/fakes.ts";
import { FakeEtcd, fleetSettings, keptAlerts } from "../support/fake_etcd.ts";

/** Real time, short waits: the slot wait polls, and the keepalive sleeps beside it. */
let offset = 0;
const clock: Clock = { now: () => Date.now() + offset, sleep: realDeps().clock.sleep };

function fleetOf(etcd: FakeEtcd, over: Partial<FleetSettings> = {}) {
  return ["a", "b", "c"].map((h) =>
    new FleetLink(fleetSettings(h, over), testDeps({ clock, etcdPost: etcd.post } as never))
  );
}

Deno.test("fleet: three hosts failing at once restart one at a time, by create revision", async () => {
  captureLogs();
  const etcd = new FakeEtcd();
  const links = fleetOf(etcd);
  const tellers = links.map(() => keptAlerts());
  const windows: { host: string; start: number; end: number }[] = [];
  try {
    for (const [i, link] of links.entries()) await link.observe("php", true, tellers[i]!);
    assert.deepEqual(etcd.keys("/php-relaunch/failing/"), [
      "/php-relaunch/failing/a/php",
      "/php-relaunch/failing/b/php",
      "/php-relaunch/failing/c/php",
    ]);
    const results = await Promise.all(
      links.map((link, i) =>
        link.restart("php", tellers[i]!, async () => {
          const start = Date.now();
          await clock.sleep(300);
          windows.push({ host: link.settings.host, start, end: Date.now() });
          return true;
        })
      ),
    );
    assert.deepEqual(results, [true, true, true]);
    windows.sort((x, y) => x.start - y.start);
    for (let i = 1; i < windows.length; i++) {
      assert.ok(
        windows[i]!.start >= windows[i - 1]!.end,
        `overlap: ${JSON.stringify(windows)}`,
      );
    }
    assert.deepEqual(etcd.keys("/php-relaunch/slots/"), [], "every slot let go");
    assert.deepEqual(tellers.flatMap((t) => t.alerts), [], "a share of 1 never holds");
    for (const [i, link] of links.entries()) await link.observe("php", false, tellers[i]!);
    assert.deepEqual(etcd.keys(), [], "healthy: the leases are revoked, their keys with them");
  } finally {
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: max_concurrent_restarts = 2 lets two restart together, never three", async () => {
  captureLogs();
  const etcd = new FakeEtcd();
  const links = fleetOf(etcd, { maxConcurrentRestarts: 2 });
  const t = keptAlerts();
  let running = 0;
  let most = 0;
  try {
    await Promise.all(links.map((link) =>
      link.restart("php", t, async () => {
        running++;
        most = Math.max(most, running);
        await clock.sleep(300);
        running--;
        return true;
      })
    ));
    assert.equal(most, 2);
  } finally {
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: more than the share failing holds restarts, and one host alerts once", async () => {
  const logs = captureLogs();
  const etcd = new FakeEtcd();
  const links = fleetOf(etcd, { sharedCauseShare: 0.5 });
  const tellers = links.map(() => keptAlerts());
  let restarted = 0;
  const work = () => {
    restarted++;
    return Promise.resolve(true);
  };
  try {
    // one host of three: restarted as usual
    await links[0]!.observe("php", true, tellers[0]!);
    assert.equal(await links[0]!.restart("php", tellers[0]!, work), true);
    // all three: held, whoever asks, as often as they ask
    for (let round = 0; round < 3; round++) {
      for (const [i, link] of links.entries()) await link.observe("php", true, tellers[i]!);
      for (const [i, link] of links.entries()) {
        assert.equal(await link.restart("php", tellers[i]!, work), null);
      }
    }
    assert.equal(restarted, 1);
    const alerts = tellers.flatMap((t) => t.alerts);
    assert.equal(alerts.length, 1, alerts.join("\n"));
    assert.match(alerts[0]!, /^PHP fleet-wide failure: Fleet-wide failure: 2 of 3 hosts/);
    assert.equal(
      logs.lines().filter((l) => /Restart held/.test(l)).length,
      3,
      "each host says it holds once",
    );
    // the cause ends: every host healthy again for 60 s; one "resolved", by the host that alerted
    for (let round = 0; round < 2; round++) {
      for (const [i, link] of links.entries()) await link.observe("php", false, tellers[i]!);
    }
    assert.equal(tellers.flatMap((t) => t.alerts).length, 1, "not resolved before 60 s below");
    offset += 60_000;
    for (const [i, link] of links.entries()) await link.observe("php", false, tellers[i]!);
    const after = tellers.flatMap((t) => t.alerts);
    assert.equal(after.length, 2, after.join("\n"));
    assert.match(after[1]!, /^PHP fleet-wide failure resolved/);
    assert.deepEqual(etcd.keys(), []);
  } finally {
    offset = 0;
    await Promise.all(links.map((l) => l.close()));
  }
});

Deno.test("fleet: etcd unreachable, restarts go on alone; said once, and once when it is back", async () => {
  const logs = captureLogs();
  const etcd = new FakeEtcd();
  etcd.down = true;
  const [link] = fleetOf(etcd, { sharedCauseShare: 0.1 });
  const t = keptAlerts();
  let restarted = 0;
  const work = () => {
    restarted++;
    return Promise.resolve(true);
  };
  try {
    for (let i = 0; i < 5; i++) {
      await link!.observe("php", true, t);
      assert.equal(await link!.restart("php", t, work), true);
    }
    // asked again after the retry pause, still down: not said again
    offset += ETCD_RETRY_MS;
    await link!.observe("php", true, t);
    assert.equal(await link!.restart("php", t, work), true);
    assert.equal(restarted, 6);
    const down = logs.lines().filter((l) => /Cannot reach etcd/.test(l));
    assert.equal(down.length, 1, logs.lines().join("\n"));
    assert.deepEqual(t.alerts, [], "no alert for etcd");
    etcd.down = false;
    // asked again only after the retry pause: a host that is down is not asked every probe
    await link!.observe("php", true, t);
    assert.equal(logs.lines().filter((l) => /etcd answers again/.test(l)).length, 0);
    offset += 2 * ETCD_RETRY_MS;
    for (let i = 0; i < 3; i++) await link!.observe("php", true, t);
    assert.equal(logs.lines().filter((l) => /etcd answers again/.test(l)).length, 1);
    // back, one host of three failing is more than 0.1: held now, and alerted (once)
    assert.deepEqual(etcd.keys(), ["/php-relaunch/failing/a/php", "/php-relaunch/fleet-alert"]);
    assert.equal(await link!.restart("php", t, work), null);
    assert.equal(t.alerts.length, 1);
  } finally {
    offset = 0;
    await link!.close();
  }
});
