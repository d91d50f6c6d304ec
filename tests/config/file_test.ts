import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli.ts";
import { loadConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/settings.ts";
import { parseConfigFile } from "../../src/config/file.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { debianFs, smtpRoute, testDeps } from "../support/fakes.ts";

const FILE = "/etc/php-relaunch/config.toml";

const twoVersions = `
[defaults]
interval = 0.5
timeout = "2s"
mail_to = ["ops@example.com"]
rungs = ["kill"]

[mail]
smtp_host = "mail.example.com"
smtp_port = 587
from = "watch@example.com"

[log]
format = "json"

[[target]]
name = "legacy"
url = "http://127.0.0.1:8874/php-heartbeat.php"
service = "php7.4-fpm"
failure_threshold = 3
max_restarts = 5
restart_window = "1h"

[[target]]
name = "main"
url = "http://127.0.0.1:8889/php-heartbeat.php"
service = "php8.2-fpm"
mail_to = ["web@example.com"]
`;

function hostWith(files: Record<string, string>) {
  return testDeps({
    fs: debianFs({
      dirs: { "/etc/init.d": ["php7.4-fpm", "php8.2-fpm"] },
      executables: ["/usr/sbin/php-fpm7.4"],
      files,
    }),
  });
}

async function load(argv: string[], files: Record<string, string>): Promise<Config> {
  const { mode, raw } = parseCommandLine(argv);
  return await loadConfig(mode as "watch", raw, hostWith(files));
}

async function issuesOf(argv: string[], files: Record<string, string>): Promise<string[]> {
  try {
    await load(argv, files);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues];
    throw err;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("config file: two targets on two PHP versions, each with its own service", async () => {
  const cfg = await load(["watch"], { [FILE]: twoVersions });
  assert.equal(cfg.configFile, FILE);
  const [legacy, main] = cfg.targets;
  assert.equal(legacy?.fpm.service, "php7.4-fpm");
  assert.equal(legacy?.fpm.processName, "php-fpm7.4");
  assert.equal(main?.fpm.service, "php8.2-fpm");
  assert.equal(legacy?.policy.intervalMs, 500, "sub-second interval from [defaults]");
  assert.equal(legacy?.timeoutMs, 2000);
  assert.equal(legacy?.policy.failureThreshold, 3, "the target's own key wins");
  assert.equal(main?.policy.failureThreshold, 2, "watch default");
  assert.equal(legacy?.policy.restartWindowMs, 3_600_000);
  assert.deepEqual(legacy?.mailTo, ["ops@example.com"]);
  assert.deepEqual(main?.mailTo, ["web@example.com"]);
  assert.equal(legacy?.stateFile, "/var/lib/php-relaunch/legacy.json");
  assert.equal(legacy?.lockFile, "/run/php-relaunch/php-relaunch-php7.4-fpm.lock");
  assert.equal(legacy?.pidFile, "/run/php/php7.4-fpm.pid", "Debian's pid file");
  assert.deepEqual(legacy?.rungs, ["kill"], "from [defaults]");
  assert.deepEqual(cfg.mail, smtpRoute("mail.example.com", 587));
  assert.equal(cfg.mailFrom, "watch@example.com");
  assert.equal(cfg.logFormat, "json");
});

Deno.test("config file: flags override the file", async () => {
  const cfg = await load(
    [
      "watch",
      "--smtp-port",
      "2525",
      "--log-format",
      "text",
      "--interval",
      "3",
      "--state-dir",
      "/srv/state",
    ],
    { [FILE]: twoVersions },
  );
  assert.equal(cfg.mail.transport === "smtp" && cfg.mail.port, 2525);
  assert.equal(cfg.logFormat, "text");
  assert.ok(cfg.targets.every((t) => t.policy.intervalMs === 3000));
  assert.equal(cfg.targets[0]?.stateFile, "/srv/state/legacy.json");
  const other = await load(["watch", "--config", "/srv/other.toml"], {
    "/srv/other.toml": twoVersions,
  });
  assert.equal(other.configFile, "/srv/other.toml");
});

Deno.test("config file: every error names the key, the value and what is allowed", async () => {
  const issues = await issuesOf(["watch"], {
    [FILE]: `
[defaults]
interval = "soon"
timout = 3
[[target]]
name = "main"
url = "gopher://x"
failure_threshold = 0
rungs = ["pray"]
`,
  });
  const all = issues.join("\n");
  assert.match(all, /defaults\.interval: "soon" is not allowed: expected a duration/);
  assert.match(all, /defaults: unknown key "timout"/);
  assert.match(all, /target\[0\]\.url: "gopher:\/\/x" is not allowed: expected an http/);
  assert.match(
    all,
    /target\[0\]\.failure_threshold: 0 is not allowed: expected a whole number from 1/,
  );
  assert.match(
    all,
    /target\[0\]\.rungs\[0\]: "pray" is not allowed: expected rungs from kill_stuck, reload, restart, kill/,
  );
  for (const line of issues) assert.ok(line.startsWith(`${FILE}: `), line);
});

Deno.test("config file: wrong types, optional durations and empty lists are named too", () => {
  const r = parseConfigFile(
    FILE,
    `
mail = "localhost"
[defaults]
reminder = "soon"
stuck_after = 0
php_cgi = "yes"
rungs = []
[[target]]
url = "http://127.0.0.1/ping"
`,
  );
  assert.ok(Array.isArray(r));
  const all = r.join("\n");
  assert.match(all, /: mail: "localhost" is not allowed: expected object/);
  assert.match(
    all,
    /defaults\.reminder: "soon" is not allowed: expected 0 \(off\) or a duration from 1m/,
  );
  assert.doesNotMatch(all, /stuck_after/, "0 turns stuck_after off");
  assert.match(all, /defaults\.php_cgi: "yes" is not allowed: expected boolean/);
  assert.match(all, /defaults\.rungs: \[\] is not allowed: expected at least one rung/);
  assert.match(all, /target\[0\]\.name: missing: expected a plain name \(letters/);
  const off = parseConfigFile(
    FILE,
    `[defaults]\nreminder = 0\n[[target]]\nname = "a"\nurl = "http://x/"\n`,
  );
  assert.ok(!Array.isArray(off));
  assert.equal(off.defaults.reminder, 0);
});

Deno.test("config file: retry_after, pause_default, pause_max and [alertmanager]", () => {
  const ok = parseConfigFile(
    FILE,
    `[defaults]\nretry_after = ["2m", 600]\npause_default = "10m"\npause_max = "2h"
[alertmanager]\nurl = "http://127.0.0.1:9093"
[[target]]\nname = "a"\nurl = "http://x/"\nretry_after = []\n`,
  );
  assert.ok(!Array.isArray(ok), Array.isArray(ok) ? ok.join("\n") : "");
  assert.deepEqual(ok.defaults.retry_after, [120_000, 600_000]);
  assert.deepEqual(ok.target[0]!.retry_after, [], "[]: never retry, as before");
  assert.equal(ok.defaults.pause_max, 7_200_000);
  assert.equal(ok.alertmanager.url, "http://127.0.0.1:9093");
  const bad = parseConfigFile(
    FILE,
    `[defaults]\nretry_after = ["0s"]\npause_max = "60d"\n[alertmanager]\nurl = "am:9093"
[[target]]\nname = "a"\nurl = "http://x/"\n`,
  );
  assert.ok(Array.isArray(bad));
  const all = bad.join("\n");
  assert.match(
    all,
    /defaults\.retry_after\[0\]: "0s" is not allowed: expected a duration from 1s to 7 days/,
  );
  assert.match(all, /defaults\.pause_max: "60d" is not allowed: expected a duration/);
  assert.match(
    all,
    /alertmanager\.url: .* expected Alertmanager's http:\/\/ or https:\/\/ base URL/,
  );
});

Deno.test("config file: a missing key says what it expects", () => {
  const none = parseConfigFile(FILE, `[defaults]\ntimeout = 5\n`);
  assert.deepEqual(none, [
    `${FILE}: target: missing: expected at least one [[target]] with a name and a url (or auto = true)`,
  ]);
  const auto = parseConfigFile(FILE, `auto = true\n[defaults]\ntimeout = 5\n`);
  assert.ok(!Array.isArray(auto), Array.isArray(auto) ? auto.join("\n") : "");
  assert.equal(auto.auto, true);
  assert.deepEqual(auto.target, [], "the targets come from discovery");
  const r = parseConfigFile(FILE, `[webhook]\n[[target]]\nname = "a"\n`);
  assert.ok(Array.isArray(r));
  assert.deepEqual([...r].sort(), [
    `${FILE}: target[0].url: missing: expected an http://, https://, fcgi://HOST:PORT/PATH or ` +
    `fcgi+unix:///SOCKET.sock/PATH URL`,
    `${FILE}: webhook.url: missing: expected an http:// or https:// URL`,
  ]);
});

Deno.test("config file: TOML syntax errors say where", () => {
  const r = parseConfigFile(FILE, "[[target]]\nname = \n");
  assert.ok(Array.isArray(r));
  assert.match(r[0]!, /^Cannot parse \/etc\/php-relaunch\/config\.toml: line 2, column \d+/);
});

Deno.test("config file: two targets restarting one service is refused", async () => {
  const issues = await issuesOf(["watch"], {
    [FILE]: `
[[target]]
name = "a"
url = "http://127.0.0.1:8889/a.php"
service = "php8.2-fpm"
[[target]]
name = "b"
url = "http://127.0.0.1:8889/b.php"
service = "php8.2-fpm"
`,
  });
  assert.match(issues.join("\n"), /Targets "a" and "b" both restart php8\.2-fpm/);
});

Deno.test("config file: watch without one says which file is missing", async () => {
  const issues = await issuesOf(["watch"], {});
  assert.match(issues[0]!, /Cannot read config file "\/etc\/php-relaunch\/config\.toml"/);
});

Deno.test("watch with a URL on the command line: one target with watch defaults", async () => {
  const cfg = await load([
    "watch",
    "http://127.0.0.1:8889/php-heartbeat.php",
    "--service",
    "php8.2-fpm",
    "--interval",
    "0.5",
  ], {});
  assert.equal(cfg.configFile, null);
  const t = cfg.targets[0]!;
  assert.equal(t.policy.intervalMs, 500);
  assert.equal(t.timeoutMs, 5000);
  assert.equal(t.policy.failureThreshold, 2);
  assert.equal(t.policy.timeoutThreshold, 2);
});

Deno.test("the positional form ignores the default file (unless --config names one)", async () => {
  const cfg = await load([
    "http://127.0.0.1:8889/php-heartbeat.php",
    "5",
    "",
    "--service",
    "php8.2-fpm",
  ], {
    [FILE]: "this is not toml",
  });
  assert.equal(cfg.configFile, null);
  assert.equal(cfg.targets[0]?.policy.timeoutThreshold, 1, "the original's policy");
});

Deno.test("config file: a relative --config is resolved against the current folder", async () => {
  const path = `${Deno.cwd()}/other.toml`;
  const cfg = await load(["watch", "-c", "other.toml"], { [path]: twoVersions });
  assert.equal(cfg.configFile, path);
});

Deno.test("config file: addresses follow the command line's rule", () => {
  const r = parseConfigFile(
    FILE,
    `[defaults]\nmail_to = ["root@localhost", "root"]\n[[target]]\nname = "a"\nurl = "http://127.0.0.1/"\n`,
  );
  assert.ok(Array.isArray(r));
  assert.deepEqual(r, [
    `${FILE}: defaults.mail_to[1]: "root" is not allowed: expected an email address user@host of at most 254 characters`,
  ]);
});

/** Loads `text` as the default configuration file of `watch`. */
const loadText = (text: string) => load(["watch"], { [FILE]: text });

Deno.test("config file: FastCGI targets, status_url, expect and the pool settings", async () => {
  const cfg = await loadText(`
[defaults]
on_overload = "restart"
stuck_after = "45s"
warn_listen_queue = 0
warn_every = "1h"

[[target]]
name = "direct"
url = "fcgi://[::1]:9000/ping"
status_url = "fcgi+unix:///run/php/status.sock/status"
expect = ""
fpm_config = "/opt/php/etc/php-fpm.conf"
service = "php8.2-fpm"
`);
  const t = cfg.targets[0]!;
  assert.deepEqual(t.fcgi?.address, { transport: "tcp", hostname: "::1", port: 9000 });
  assert.equal(t.expect, "");
  assert.deepEqual(t.status?.address, { transport: "unix", path: "/run/php/status.sock" });
  assert.equal(t.fpmConfig, "/opt/php/etc/php-fpm.conf");
  assert.equal(t.policy.onOverload, "restart");
  assert.equal(t.stuckAfterMs, 45_000);
  assert.deepEqual(t.warn, { listenQueue: 0, slowRequests: 5, maxChildren: true });
  assert.equal(t.warnEveryMs, 3_600_000);
  assert.deepEqual(t.rungs, ["kill_stuck", "reload", "restart", "kill"]);
});

Deno.test("config file: a bad FastCGI URL or status_url names the target and what is expected", async () => {
  await assert.rejects(
    () =>
      loadText(`
[[target]]
name = "a"
url = "http://127.0.0.1:8889/php-heartbeat.php"
service = "php8.2-fpm"

[[target]]
name = "b"
url = "http://127.0.0.1:8889/php-heartbeat.php"
status_url = "http://127.0.0.1/status"
on_overload = "panic"
service = "php8.2-fpm"
`),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const all = err.issues.join("\n");
      assert.match(
        all,
        /target\[1\]\.status_url: "http:\/\/127\.0\.0\.1\/status" is not allowed: expected fcgi:/,
      );
      assert.match(
        all,
        /target\[1\]\.on_overload: "panic" is not allowed: expected "alert" or "restart"/,
      );
      return true;
    },
  );
  await assert.rejects(
    () =>
      loadText(`
[[target]]
name = "a"
url = "fcgi+unix:///run/php/fpm/ping"
service = "php8.2-fpm"
`),
    /target "a": Cannot use URI "fcgi\+unix:\/\/\/run\/php\/fpm\/ping": expected fcgi\+unix:\/\/\/SOCKET\.sock\/PATH/,
  );
});
