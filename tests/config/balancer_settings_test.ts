/** `[balancer]`: the agent's address, the target it speaks for, drain_wait, and check-config. */
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli.ts";
import { describeConfig } from "../../src/commands/check_config.ts";
import { balancerSettings, parseAgentListen } from "../../src/config/balancer_settings.ts";
import { parseConfigFile } from "../../src/config/file.ts";
import { loadConfig } from "../../src/config/load.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { debianFs, fakeHost, testDeps } from "../support/fakes.ts";

const TARGET = `
[[target]]
name = "main"
url = "http://127.0.0.1:8889/hb.php"
service = "php8.2-fpm"
`;

Deno.test("agent_listen: loopback, or an address the operator names; never a wildcard nor a host name", () => {
  assert.deepEqual(parseAgentListen("127.0.0.1:9777"), {
    hostname: "127.0.0.1",
    port: 9777,
    public: false,
  });
  assert.deepEqual(parseAgentListen("[::1]:9777"), { hostname: "::1", port: 9777, public: false });
  assert.deepEqual(parseAgentListen("localhost:9777"), {
    hostname: "localhost",
    port: 9777,
    public: false,
  });
  assert.deepEqual(parseAgentListen("10.0.0.11:9777"), {
    hostname: "10.0.0.11",
    port: 9777,
    public: true,
  });
  assert.deepEqual(parseAgentListen("[fd00::11]:9777"), {
    hostname: "fd00::11",
    port: 9777,
    public: true,
  });
  for (const bad of ["0.0.0.0:9777", "[::]:9777", "web1.example.com:9777", "9777", "127.0.0.1:0"]) {
    assert.equal(typeof parseAgentListen(bad), "string", bad);
  }
  assert.match(String(parseAgentListen("0.0.0.0:9777")), /every interface/);
  assert.equal(typeof parseAgentListen("10.0.0.300:9777"), "string");
  assert.equal(typeof parseAgentListen("127.0.0.1:65536"), "string");
});

Deno.test("[balancer] in the file: drain_wait's bounds, agent_listen required, unknown keys named", () => {
  const file = (section: string) => parseConfigFile("/c.toml", `[balancer]\n${section}\n${TARGET}`);
  const ok = file('agent_listen = "127.0.0.1:9777"\ndrain_wait = "500ms"');
  assert.ok(!Array.isArray(ok));
  assert.deepEqual(ok.balancer, { agent_listen: "127.0.0.1:9777", drain_wait: 500 });
  assert.deepEqual(file('agent_listen = "127.0.0.1:9777"\ndrain_wait = 31'), [
    '/c.toml: balancer.drain_wait: 31 is not allowed: expected a duration from 0 to 30 seconds, as seconds (2, 0.5) or with a unit ("500ms", "2s")',
  ]);
  assert.deepEqual(file("drain_wait = 2"), [
    "/c.toml: balancer.agent_listen: missing: expected the agent's ADDRESS:PORT, e.g. 127.0.0.1:977",
  ]);
  assert.match(
    String(file('agent_listen = "0.0.0.0:9777"')),
    /balancer\.agent_listen: .*every interface/,
  );
  assert.deepEqual(file('agent_listen = "127.0.0.1:9777"\nweight = 5'), [
    '/c.toml: balancer: unknown key "weight"',
  ]);
});

Deno.test("[balancer]: the target must be one; the cron form cannot answer; drain_wait defaults to 2 s", () => {
  const section = { "agent_listen": "127.0.0.1:9777" };
  assert.deepEqual(balancerSettings("watch", section, "/c.toml", ["main"]), {
    listen: { hostname: "127.0.0.1", port: 9777 },
    public: false,
    target: null,
    drainWaitMs: 2000,
  });
  assert.equal(balancerSettings("watch", undefined, "/c.toml", ["main"]), null);
  assert.deepEqual(balancerSettings("watch", { ...section, target: "blog" }, "/c.toml", ["main"]), [
    '/c.toml: balancer.target: "blog" is not a target: expected one of "main"',
  ]);
  assert.deepEqual(balancerSettings("minute", section, "/c.toml", ["main"]), [
    "/c.toml: balancer: HAProxy's agent-check is answered by php-relaunch watch only",
  ]);
  // the commands on targets read the same file, and leave the section alone
  assert.ok(!Array.isArray(balancerSettings("status", section, "/c.toml", ["main"])));
});

Deno.test("check-config shows the balancer's part", async () => {
  const config = (balancer: string) =>
    testDeps({
      host: fakeHost(0),
      fs: debianFs({
        dirs: { "/etc/init.d": ["php8.2-fpm"] },
        files: { "/etc/php-relaunch/config.toml": `${balancer}\n${TARGET}` },
      }),
    });
  const { mode, raw } = parseCommandLine([
    "check-config",
    "--config",
    "/etc/php-relaunch/config.toml",
  ]);
  const none = describeConfig(await loadConfig(mode as "check", raw, config("")));
  assert.match(none, /^balancer +none \(set \[balancer\] agent_listen/m);
  const shown = describeConfig(
    await loadConfig(
      mode as "check",
      raw,
      config('[balancer]\nagent_listen = "10.0.0.11:9777"\ntarget = "main"\ndrain_wait = 3'),
    ),
  );
  assert.match(
    shown,
    /^balancer +HAProxy agent-check on 10\.0\.0\.11:9777 \(beyond loopback: .*\) for target main; 3 s drain before a gentle rung$/m,
  );
  await assert.rejects(
    () =>
      loadConfig(
        mode as "check",
        raw,
        config('[balancer]\nagent_listen = "127.0.0.1:9777"\ntarget = "nope"'),
      ),
    (err) => err instanceof ConfigError && /balancer\.target: "nope"/.test(err.issues.join()),
  );
});
