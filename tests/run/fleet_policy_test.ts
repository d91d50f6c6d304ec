import assert from "node:assert/strict";
import {
  failingHosts,
  fleetAlertMove,
  fleetSize,
  holdsRestart,
  holdsSlot,
  hostsSaid,
  isSharedCause,
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

Deno.test("fleet policy: the fleet-wide alert is claimed once and resolved by its owner", () => {
  assert.equal(fleetAlertMove(null, true), "claim");
  const owner = { owner: true, since: 0, hosts: ["a"] };
  const other = { owner: false, since: 0, hosts: ["a"] };
  assert.equal(fleetAlertMove(owner, true), "none");
  assert.equal(fleetAlertMove(other, true), "none");
  assert.equal(fleetAlertMove(owner, false), "resolve");
  assert.equal(fleetAlertMove(other, false), "forget");
  assert.equal(fleetAlertMove(null, false), "none");
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
