import assert from "node:assert/strict";
import { parseConfigFile } from "../../src/config/file.ts";
import { describeFleet, fleetSettingsOf } from "../../src/config/fleet_settings.ts";

const TARGET = '[[target]]\nname = "php"\nurl = "http://127.0.0.1:8889/hb"\n';

Deno.test("fleet settings: [fleet] with its defaults, and check-config's lines", () => {
  const file = parseConfigFile(
    "/c.toml",
    `[fleet]\netcd = ["http://10.0.0.5:2379", "https://10.0.0.6:2379"]\nhosts = 3\n${TARGET}`,
  );
  assert.ok(!Array.isArray(file), String(file));
  const f = fleetSettingsOf(file.fleet!, "web1");
  assert.deepEqual(f.endpoints.map((u) => u.href), [
    "http://10.0.0.5:2379/",
    "https://10.0.0.6:2379/",
  ]);
  assert.equal(f.host, "web1");
  assert.equal(f.prefix, "/php-relaunch/");
  assert.equal(f.maxConcurrentRestarts, 1);
  assert.equal(f.sharedCauseShare, 0.5);
  assert.equal(f.leaseTtlMs, 15_000);
  assert.equal(f.maxHoldMs, 300_000);
  assert.match(describeFleet(f).join("\n"), /at most 1 of 3 hosts restart at once/);
  assert.match(describeFleet(f).join("\n"), /at most 300 s \(a certain crash or hang never\)/);
  assert.match(describeFleet(null).join("\n"), /none/);
  const named = parseConfigFile(
    "/c.toml",
    `[fleet]\netcd = ["http://127.0.0.1:2379"]\nhosts = ["w1", "w2"]\nhost = "w2"\nshared_cause_share = 1\nlease_ttl = "30s"\nmax_hold = "2m"\n${TARGET}`,
  );
  assert.ok(!Array.isArray(named), String(named));
  assert.equal(fleetSettingsOf(named.fleet!, "x").maxHoldMs, 120_000);
  const g = fleetSettingsOf(named.fleet!, "ignored");
  assert.deepEqual(g.hosts, ["w1", "w2"]);
  assert.equal(g.host, "w2");
  assert.equal(g.leaseTtlMs, 30_000);
});

Deno.test("fleet settings: every bad value is named with what is allowed", () => {
  const problems = parseConfigFile(
    "/c.toml",
    `[fleet]\netcd = ["http://user:pw@10.0.0.5:2379", "ftp://x", "http://10.0.0.5:6666", "http://h:2379/v3"]\nhosts = 0\nshared_cause_share = 0\nmax_concurrent_restarts = 0\nprefix = "nope"\nmax_hold = 5\n${TARGET}`,
  );
  assert.ok(Array.isArray(problems));
  const text = problems.join("\n");
  assert.match(text, /fleet\.etcd\[0\]: .*expected an etcd client URL/);
  assert.doesNotMatch(text, /pw/, "userinfo is not shown");
  assert.match(text, /fleet\.etcd\[1\]/);
  assert.match(text, /fleet\.etcd\[2\]: .*fetch refuses port 6666/);
  assert.match(text, /fleet\.etcd\[3\]/);
  assert.match(text, /fleet\.hosts: 0 is not allowed: expected the fleet's size/);
  assert.match(text, /fleet\.shared_cause_share: 0 is not allowed/);
  assert.match(text, /fleet\.max_concurrent_restarts: 0 is not allowed/);
  assert.match(text, /fleet\.prefix: "nope" is not allowed/);
  assert.match(text, /fleet\.max_hold: 5 is not allowed: expected a duration from 30 s to 3600 s/);
  const missing = parseConfigFile("/c.toml", `[fleet]\nhosts = 2\n${TARGET}`);
  assert.match(String(missing), /fleet\.etcd: missing/);
});
