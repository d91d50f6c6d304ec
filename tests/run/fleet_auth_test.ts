/** The fleet with etcd auth: the token on every call, renewed once, a wrong password said once. */
import assert from "node:assert/strict";
import { FleetLink, type FleetTeller } from "../../src/run/fleet.ts";
import { realDeps } from "../../src/real.ts";
import { captureLogs, testDeps } from "../support/fakes.ts";
import { FakeEtcd, fleetSettings } from "../support/fake_etcd.ts";

const PASSWORD = "pw-0b5e2d4a-never-logged";

function linkOf(etcd: FakeEtcd, password: string): FleetLink {
  const settings = fleetSettings("a", {
    auth: { user: "php-relaunch", passwordFile: "/etc/php-relaunch/etcd.password", password },
  });
  return new FleetLink(
    settings,
    testDeps({ clock: realDeps().clock, etcdPost: etcd.post } as never),
  );
}

const teller: FleetTeller = { event: () => {} };

Deno.test("fleet auth: every call carries the token; an expired one is renewed once", async () => {
  const logs = captureLogs();
  const etcd = new FakeEtcd().withAuth({ "php-relaunch": PASSWORD });
  const link = linkOf(etcd, PASSWORD);
  try {
    await link.observe("php", true, teller);
    assert.deepEqual(etcd.keys(), ["/php-relaunch/failing/a/php"]);
    etcd.expireTokens();
    let restarted = 0;
    const ok = await link.restart("php", teller, () => {
      restarted++;
      return Promise.resolve(true);
    });
    assert.equal(ok, true);
    assert.equal(restarted, 1);
    assert.equal(etcd.calls.filter((p) => p === "/v3/auth/authenticate").length, 2);
    for (const [i, path] of etcd.calls.entries()) {
      const token = etcd.tokensSent[i]!;
      if (path === "/v3/auth/authenticate") assert.equal(token, "", "no token to authenticate");
      else assert.match(token, /^tok\d+\./, `${path} carries the token`);
    }
    await link.observe("php", false, teller);
    assert.deepEqual(etcd.keys(), []);
    assert.deepEqual(
      logs.lines().filter((l) => /etcd/.test(l)),
      [],
      "a renewed token is nothing to say",
    );
  } finally {
    await link.close();
  }
});

Deno.test("fleet auth: a wrong password is said once, restarts go on alone, and once when it works", async () => {
  const logs = captureLogs();
  const etcd = new FakeEtcd().withAuth({ "php-relaunch": "the-right-one" });
  const link = linkOf(etcd, PASSWORD);
  let restarted = 0;
  const work = () => {
    restarted++;
    return Promise.resolve(true);
  };
  try {
    await link.observe("php", true, teller);
    assert.deepEqual(etcd.calls, ["/v3/auth/authenticate"], "a wrong password: asked once a step");
    for (let i = 0; i < 4; i++) {
      await link.observe("php", true, teller);
      assert.equal(await link.restart("php", teller, work), true);
    }
    assert.equal(restarted, 4);
    assert.deepEqual(etcd.keys(), []);
    const refused = logs.lines().filter((l) => /etcd refused/.test(l));
    assert.equal(refused.length, 1, logs.lines().join("\n"));
    assert.match(refused[0]!, /authentication failed/);
    // the operator sets etcd's side right
    etcd.users!.set("php-relaunch", PASSWORD);
    await link.observe("php", true, teller);
    assert.equal(logs.lines().filter((l) => /etcd answers again/.test(l)).length, 1);
    assert.deepEqual(etcd.keys(), ["/php-relaunch/failing/a/php"]);
    await link.observe("php", false, teller);
  } finally {
    await link.close();
  }
  const everything =
    JSON.stringify(logs.records, (_k, v) => typeof v === "bigint" ? String(v) : v) +
    logs.lines().join("\n");
  assert.ok(!everything.includes(PASSWORD), "the password is never logged");
  assert.ok(etcd.tokens.size > 0);
  for (const token of etcd.tokens) assert.ok(!everything.includes(token), "nor the token");
});
