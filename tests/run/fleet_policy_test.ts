import assert from "node:assert/strict";
import {
  failingHosts,
  fleetAlertMove,
  fleetSize,
  holdsRestart,
  holdsSlot,
  hostsSaid,
  isSharedCause,
  mayAlertAgain,
} from "../../src/run/fleet_policy.ts";

Deno.test("fleet policy: a shared cause is more than the share of the fleet's hosts", () => {
  assert.equal(isSharedCause(1, 3, 0.5), false);
  assert.equal(isSharedCause(2, 3, 0.5), true);
  // exactly half is not more than half
  assert.equal(isSharedCause(2, 4, 0.5), false);
  assert.equal(isSharedCause(3, 4, 0.5), true);
  // a share of 1 never holds; one host of three is more than 0.3
  assert.equal(isSharedCause(3, 3, 1), false);
  assert.equal(isSharedCause(1, 3, 0.3), true);
  // more failing hosts than the fleet has (a stray key) is the whole fleet, no more
  assert.equal(isSharedCause(5, 3, 0.99), true);
  assert.equal(isSharedCause(0, 3, 0.1), false);
});

Deno.test("fleet policy: failing hosts are counted once each, and only the listed ones", () => {
  const names = ["web1/php8.2-fpm", "web1/php7.4-fpm", "web2/php8.2-fpm", "intruder/x", "/bad"];
  assert.deepEqual(failingHosts(names, 3), ["intruder", "web1", "web2"]);
  assert.deepEqual(failingHosts(names, ["web1", "web2", "web3"]), ["web1", "web2"]);
  assert.equal(fleetSize(["a", "b"]), 2);
  assert.equal(fleetSize(7), 7);
});

Deno.test("fleet policy: a slot is held among the first max keys by create revision", () => {
  const ordered = ["/p/slots/a/t", "/p/slots/b/t", "/p/slots/c/t"];
  assert.equal(holdsSlot(ordered, "/p/slots/a/t", 1), true);
  assert.equal(holdsSlot(ordered, "/p/slots/b/t", 1), false);
  assert.equal(holdsSlot(ordered, "/p/slots/b/t", 2), true);
  assert.equal(holdsSlot(ordered, "/p/slots/c/t", 2), false);
  assert.equal(holdsSlot(ordered, "/p/slots/d/t", 5), false, "a key not listed holds nothing");
});

Deno.test("fleet policy: the fleet-wide alert is claimed once, and resolved after 60 s below", () => {
  assert.equal(fleetAlertMove(null, true, 0), "claim");
  const owner = { owner: true, alerted: true, since: 0, hosts: ["a"], belowSince: null };
  const other = { ...owner, owner: false };
  assert.equal(fleetAlertMove(owner, true, 1), "none");
  assert.equal(fleetAlertMove(other, true, 1), "none");
  // below the threshold: noted, and over only once it stayed below 60 s
  assert.equal(fleetAlertMove(owner, false, 1), "below");
  assert.equal(fleetAlertMove({ ...owner, belowSince: 1 }, false, 60_000), "none");
  assert.equal(fleetAlertMove({ ...owner, belowSince: 1 }, true, 30_000), "above");
  assert.equal(fleetAlertMove({ ...owner, belowSince: 1 }, false, 60_001), "resolve");
  assert.equal(fleetAlertMove({ ...other, belowSince: 1 }, false, 60_001), "forget");
  assert.equal(fleetAlertMove(null, false, 0), "none");
  assert.equal(mayAlertAgain(null, 0), true);
  assert.equal(mayAlertAgain(0, 299_999), false);
  assert.equal(mayAlertAgain(0, 300_000), true);
});

Deno.test("fleet policy: a certain failure is never held; others at most max_hold", () => {
  assert.equal(holdsRestart(true, false, 0, 1000, 60_000), true);
  assert.equal(holdsRestart(true, true, 0, 1000, 60_000), false, "certain: never held");
  assert.equal(holdsRestart(true, false, 0, 59_999, 60_000), true);
  assert.equal(holdsRestart(true, false, 0, 60_000, 60_000), false, "max_hold over");
  assert.equal(holdsRestart(false, false, null, 0, 60_000), false);
});

Deno.test("fleet policy: failing hosts said as at most the fleet's size, 20 names then +N more", () => {
  assert.deepEqual(hostsSaid(["a", "b"], 3), { n: 2, names: "a, b" });
  const many = Array.from({ length: 25 }, (_, i) => `h${i}`);
  const said = hostsSaid(many, 10);
  assert.equal(said.n, 10);
  assert.equal(said.names.split(", ").length, 20);
  assert.match(said.names, /h19 \+5 more$/);
});
