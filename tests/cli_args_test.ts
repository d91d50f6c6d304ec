import assert from "node:assert/strict";
import { parseCommandLine, run } from "../src/cli.ts";
import { USAGE } from "../src/usage.ts";
import { loadConfig } from "../src/config/load.ts";
import { ConfigError } from "../src/shared/errors.ts";
import { debianFs, fakeFs, fakeHost, FakeRunner, smtpRoute, testDeps } from "./support/fakes.ts";

const URI = "http://heartbeat.no-ip:8889/php-heartbeat.php";

/** The config of `argv` with its only target's settings alongside. */
async function config(argv: string[], deps = testDeps()) {
  const { mode, raw } = parseCommandLine(argv);
  assert.notEqual(mode, "help");
  assert.notEqual(mode, "version");
  const cfg = await loadConfig(mode as "minute", raw, deps);
  assert.equal(cfg.targets.length, 1);
  return { ...cfg, ...cfg.targets[0]! };
}

Deno.test("the original's crontab forms", async (t) => {
  await t.step("one address", async () => {
    const cfg = await config([URI, "5", "some@address.com"]);
    assert.equal(cfg.url.href, URI);
    assert.equal(cfg.timeoutMs, 5000);
    assert.deepEqual(cfg.mailTo, ["some@address.com"]);
    assert.equal(cfg.cgi, null);
    assert.equal(cfg.mode, "minute");
  });
  await t.step("two addresses", async () => {
    const cfg = await config([URI, "5", "some@address1.com,another@address2.com"]);
    assert.deepEqual(cfg.mailTo, ["some@address1.com", "another@address2.com"]);
  });
  await t.step("'' for no mail", async () => {
    assert.deepEqual((await config([URI, "5", ""])).mailTo, []);
  });
  await t.step("a 4th argument relaunches php-cgi too", async () => {
    const deps = testDeps({
      fs: debianFs({
        dirs: { "/etc/init.d": ["php8.2-fpm", "php8.2-cgi"] },
        executables: ["/usr/bin/php-cgi8.2"],
      }),
    });
    const cfg = await config([URI, "5", "some@address.com", "1"], deps);
    assert.deepEqual(cfg.cgi, { service: "php8.2-cgi", processName: "php-cgi8.2" });
  });
});

Deno.test("named flags mean the same as the positional form", async () => {
  const a = await config([URI, "7", "a@b.example,c@d.example"]);
  const b = await config(["--url", URI, "--timeout", "7", "--mail-to", "a@b.example,c@d.example"]);
  assert.deepEqual({ ...a }, { ...b });
});

Deno.test("defaults: Debian paths as root, per-user paths otherwise", async () => {
  const root = await config([URI, "5", ""]);
  assert.equal(root.logFile, "/var/log/php-relaunch.log");
  assert.equal(root.lockFile, "/run/php-relaunch/php-relaunch-php8.2-fpm.lock");
  assert.deepEqual(root.mail, smtpRoute("localhost", 25));
  assert.equal(root.mailFrom, "php-relaunch@web1");
  assert.equal(root.fpm.processName, "php-fpm8.2");
  assert.equal(root.init, "sysv");
  const user = await config(
    [URI, "5", ""],
    testDeps({ host: fakeHost(1000, { HOME: "/home/op", XDG_RUNTIME_DIR: "/run/user/1000" }) }),
  );
  assert.equal(user.logFile, "/home/op/.local/state/php-relaunch.log");
  assert.equal(user.lockFile, "/run/user/1000/php-relaunch-php8.2-fpm.lock");
});

Deno.test("mail settings from the environment; flags win", async () => {
  const env = {
    PHP_RELAUNCH_SMTP_HOST: "mail.example",
    PHP_RELAUNCH_SMTP_PORT: "2525",
    PHP_RELAUNCH_MAIL_FROM: "watch@example.com",
  };
  const deps = testDeps({ host: fakeHost(0, env) });
  const fromEnv = await config([URI, "5", ""], deps);
  assert.deepEqual(fromEnv.mail, smtpRoute("mail.example", 2525));
  assert.equal(fromEnv.mailFrom, "watch@example.com");
  const flags = await config(
    [URI, "5", "", "--smtp-port", "587", "--smtp-host", "127.0.0.1"],
    deps,
  );
  assert.deepEqual(flags.mail, smtpRoute("127.0.0.1", 587));
});

Deno.test("systemd is detected by /run/systemd/system", async () => {
  const fs = fakeFs({
    executables: [
      "/usr/bin/systemctl",
      "/usr/bin/ps",
      "/usr/bin/kill",
      "/usr/sbin/php-fpm",
    ],
    dirs: { "/usr/lib/systemd/system": ["php-fpm.service", "nginx.service"] },
    exists: ["/run/systemd/system", "/run/lock"],
  });
  const cfg = await config([URI, "5", ""], testDeps({ fs }));
  assert.equal(cfg.init, "systemd");
  assert.deepEqual(cfg.fpm, { service: "php-fpm", processName: "php-fpm" });
});

/** Runs the CLI with fakes that fail the test if anything is probed, run or mailed. */
async function rejected(argv: string[], deps = testDeps()) {
  const runner = new FakeRunner(() => new Error("nothing may run"));
  const d = { ...deps, runner };
  const code = await run(argv, d);
  return { code, err: d.err.join(""), runs: runner.calls.length, deps: d };
}

Deno.test("every bad input: exit 2, one clear line, nothing probed, run or mailed", async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    ["no arguments", [], /Missing arguments/],
    ["unknown flag", ["--frobnicate", URI], /Unknown option '--frobnicate'/],
    ["too many arguments", [URI, "5", "", "1", "extra"], /Too many arguments.*"extra"/],
    ["not http", ["ftp://example.com/x", "5", ""], /"ftp:\/\/example.com\/x".*http/],
    ["no scheme", ["heartbeat.no-ip/php-heartbeat.php", "5", ""], /Cannot parse URI/],
    ["no host", ["http://", "5", ""], /Cannot parse URI "http:\/\/"/],
    ["timeout not a number", [URI, "five", ""], /timeout "five".*1 to 60/],
    ["timeout zero", [URI, "0", ""], /timeout "0"/],
    ["timeout too big", [URI, "61", ""], /timeout "61"/],
    ["timeout fractional", [URI, "2.5", ""], /timeout "2.5"/],
    ["not an address", [URI, "5", "root"], /email address "root"/],
    ["one bad address of two", [URI, "5", "a@b.example,not an address"], /"not an address"/],
    ["bad restart-cgi", [URI, "5", "", "maybe"], /restart-cgi "maybe"/],
    ["URL given twice", [URI, "--url", URI], /both as an argument and as --url/],
    ["--restart without --once", [URI, "--restart"], /--restart without --once/],
    ["bad SMTP port", [URI, "5", "", "--smtp-port", "99999"], /SMTP port "99999"/],
    ["relative log file", [URI, "5", "", "--log-file", "log.txt"], /log file "log.txt"/],
    ["odd service name", [URI, "5", "", "--service", "php;rm -rf"], /service "php;rm -rf"/],
    ["run shorter than timeout", [URI, "10", "", "--run-for", "5"], /run for 5 s/],
    ["unknown init system", [URI, "5", "", "--init", "upstart"], /init system "upstart".*openrc/],
    ["fcgi without a port", ["fcgi://127.0.0.1/ping", "5", ""], /fcgi:\/\/HOST:PORT\/PATH/],
    ["fcgi+unix without .sock", ["fcgi+unix:///run/php/fpm/ping"], /SOCKET\.sock\/PATH/],
    ["status page over HTTP", [URI, "--status-url", "http://127.0.0.1/status"], /status URI/],
    ["bad --since", ["report", "--since", "a week"], /since "a week".*7d/],
    ["bad --format", ["report", "--format", "xml"], /report format "xml"/],
    ["--since without report", [URI, "--since", "7d"], /Cannot use --since without report\n$/],
    [
      "--format without report, status or discover",
      [URI, "--format", "json"],
      /--format without report, status or discover/,
    ],
    [
      "unknown TLS mode",
      [URI, "--smtp-tls", "ssl"],
      /SMTP TLS mode "ssl": expected auto, starttls, tls, none/,
    ],
    [
      "no sendmail",
      [URI, "--mail-transport", "sendmail"],
      /Cannot find sendmail at "\/usr\/sbin\/sendmail"/,
    ],
    [
      "webhook not http",
      [URI, "--webhook", "ftp://hooks.example.com/x"],
      /^php-relaunch: Cannot use webhook URL ftp:\/\/hooks\.example\.com\/…: expected http/,
    ],
    [
      "missing password file",
      [URI, "--smtp-user", "a", "--smtp-password-file", "/etc/pw"],
      /"\/etc\/pw": it does not exist/,
    ],
  ];
  for (const [name, argv, pattern] of cases) {
    await t.step(name, async () => {
      const { code, err, runs, deps } = await rejected(argv);
      assert.equal(code, 2);
      assert.match(err, pattern);
      assert.equal(err.trim().split("\n").length, 1, `one line, got: ${err}`);
      assert.equal(runs, 0);
      assert.equal((deps.httpGet as unknown as { calls: URL[] }).calls.length, 0);
      assert.equal((deps.mailer as unknown as { sent: unknown[] }).sent.length, 0);
    });
  }
});

Deno.test("service problems are found at start-up, not during an incident", async (t) => {
  await t.step("no php-fpm installed", async () => {
    const fs = debianFs({ dirs: { "/etc/init.d": ["nginx"] } });
    const { code, err } = await rejected([URI, "5", ""], testDeps({ fs }));
    assert.equal(code, 2);
    assert.match(err, /Cannot find a php-fpm service.*--service/);
  });
  await t.step("several and no choice", async () => {
    const fs = debianFs({ dirs: { "/etc/init.d": ["php7.4-fpm", "php8.2-fpm"] } });
    const { code, err } = await rejected([URI, "5", ""], testDeps({ fs }));
    assert.equal(code, 2);
    assert.match(err, /several php-fpm services \(php7.4-fpm, php8.2-fpm\).*--service/);
  });
  await t.step("several, chosen with --service", async () => {
    const fs = debianFs({
      dirs: { "/etc/init.d": ["php7.4-fpm", "php8.2-fpm"] },
      executables: ["/usr/sbin/php-fpm7.4"],
    });
    const cfg = await config([URI, "5", "", "--service", "php7.4-fpm"], testDeps({ fs }));
    assert.deepEqual(cfg.fpm, { service: "php7.4-fpm", processName: "php-fpm7.4" });
  });
  await t.step("a --service that does not exist", async () => {
    const { code, err } = await rejected([
      URI,
      "5",
      "",
      "--service",
      "php9.9-fpm",
      "--process-name",
      "php-fpm9.9",
    ]);
    assert.equal(code, 2);
    assert.match(err, /Cannot find service "php9\.9-fpm" in \/etc\/init\.d/);
  });
  await t.step("a php-cgi relaunch asked for but no php-cgi service", async () => {
    const { code, err } = await rejected([URI, "5", "", "1"]);
    assert.equal(code, 2);
    assert.match(err, /Cannot find a php-cgi service.*--cgi-service/);
  });
  await t.step("ps missing", async () => {
    const fs = fakeFs({
      executables: ["/usr/sbin/service", "/usr/bin/kill", "/usr/sbin/php-fpm8.2"],
      dirs: { "/etc/init.d": ["php8.2-fpm"] },
      exists: ["/run/lock"],
    });
    const { code, err } = await rejected([URI, "5", ""], testDeps({ fs }));
    assert.equal(code, 2);
    assert.match(err, /Cannot find "ps"/);
  });
  await t.step("a service whose program is not where its name says", async () => {
    const fs = debianFs({ dirs: { "/etc/init.d": ["php-fpm"] } });
    const { err } = await rejected([URI, "5", ""], testDeps({ fs }));
    assert.match(err, /program "php-fpm" of service "php-fpm".*--process-name/);
  });
});

Deno.test("--help and --version print and exit 0 without touching anything", async () => {
  const deps = testDeps();
  assert.equal(await run(["--help"], deps), 0);
  assert.equal(deps.out.join(""), USAGE);
  for (const needle of ["Exit codes:", ">/dev/null 2>&1", "--once", "--restart", "0  healthy"]) {
    assert.ok(USAGE.includes(needle), needle);
  }
  const v = testDeps();
  assert.equal(await run(["--version"], v), 0);
  assert.match(v.out.join(""), /^php-relaunch \d+\.\d+\.\d+ \(deno \d/);
});

Deno.test("check-config prints the resolved settings", async () => {
  const deps = testDeps();
  assert.equal(await run(["check-config", URI, "5", "ops@example.com"], deps), 0);
  const out = deps.out.join("");
  assert.match(out, /init system +sysv/);
  assert.match(out, /php-fpm +php8\.2-fpm, processes named php-fpm8\.2/);
  assert.match(
    out,
    /restart +after 2 failures or 1 timeouts \(5xx confirmed after 1 s\); rungs kill/,
  );
  assert.match(out, /ops@example\.com/);
  assert.match(out, /status page +none \(set status_url/);
  assert.match(out, /php-fpm conf \/etc\/php\/8\.2\/fpm\/php-fpm\.conf/);
  const withStatus = testDeps();
  await run(["check-config", URI, "--status-url", "fcgi://127.0.0.1:9001/status"], withStatus);
  assert.match(
    withStatus.out.join(""),
    /status page +127\.0\.0\.1:9001\/status; warn at listen queue > 5, \+5 slow requests, max children reached; overloaded: alert; stuck after 5 s/,
  );
});

Deno.test("ConfigError keeps every issue", () => {
  const e = new ConfigError(["a", "b"]);
  assert.deepEqual(e.issues, ["a", "b"]);
});

Deno.test("reset waits for the target's lock, and says so when a watch process keeps it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-reset-" });
  try {
    const { tryLock } = await import("../src/shared/lock.ts");
    const held = await tryLock(`${dir}/php-relaunch-php8.2-fpm.lock`);
    assert.ok(held);
    const deps = testDeps({
      host: fakeHost(1000, { HOME: dir, XDG_RUNTIME_DIR: dir }),
    });
    try {
      const code = await run(["reset", "php8.2-fpm", "--log-file", `${dir}/log`], deps);
      assert.equal(code, 2);
      assert.match(deps.err.join(""), /php8\.2-fpm is held by a running php-relaunch .*SIGHUP/);
      assert.ok(deps.clock.sleeps.length >= 100, "it waited (on the fake clock) before saying so");
    } finally {
      held[Symbol.dispose]();
    }
    const free = testDeps({ host: fakeHost(1000, { HOME: dir, XDG_RUNTIME_DIR: dir }) });
    assert.equal(await run(["reset", "php8.2-fpm", "--log-file", `${dir}/log`], free), 0);
    assert.deepEqual(free.out, ["re-armed php8.2-fpm\n"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FastCGI probes: the address, the path, 'pong' expected; the status page on its own listener", async () => {
  const cfg = await config([
    "fcgi+unix:///run/php/php8.2-fpm.sock/ping",
    "5",
    "",
    "--status-url",
    "fcgi://127.0.0.1:9001/status",
  ]);
  const t = cfg.targets[0]!;
  assert.deepEqual(t.fcgi, {
    address: { transport: "unix", path: "/run/php/php8.2-fpm.sock" },
    path: "/ping",
    query: "",
  });
  assert.equal(t.expect, "pong");
  assert.deepEqual(t.status?.address, { transport: "tcp", hostname: "127.0.0.1", port: 9001 });
  assert.equal(t.statusOnPool, false, "pm.status_listen: the pool's workers are not needed");
  assert.equal(t.fpmConfig, "/etc/php/8.2/fpm/php-fpm.conf");
  assert.equal(t.stuckAfterMs, 5000, "stuck after the probe's timeout by default");
  const same = await config([
    "fcgi://127.0.0.1:9000/ping",
    "--status-url",
    "fcgi://127.0.0.1:9000/status",
  ]);
  assert.equal(same.targets[0]!.statusOnPool, true);
  const http = await config([URI, "5", "", "--expect", "ok"]);
  assert.equal(http.targets[0]!.fcgi, null);
  assert.equal(http.targets[0]!.expect, "ok");
});

Deno.test("SMTP password: from the environment or a 0600 root file, never without a user", async () => {
  const env = { PHP_RELAUNCH_SMTP_PASSWORD: "s3cret", PHP_RELAUNCH_SMTP_USER: "alice" };
  const fromEnv = await config(
    [URI, "--smtp-tls", "starttls"],
    testDeps({ host: fakeHost(0, env) }),
  );
  assert.deepEqual(
    fromEnv.mail,
    smtpRoute("localhost", 25, { tls: "starttls", user: "alice", password: "s3cret" }),
  );
  const noUser = await rejected(
    [URI],
    testDeps({ host: fakeHost(0, { PHP_RELAUNCH_SMTP_PASSWORD: "x" }) }),
  );
  assert.match(noUser.err, /SMTP password without a user/);
  const files = { "/etc/php-relaunch/smtp.pw": "from-file\n" };
  const good = testDeps({ fs: debianFs({ files }) });
  const cfg = await config([
    URI,
    "--smtp-user",
    "alice",
    "--smtp-password-file",
    "/etc/php-relaunch/smtp.pw",
  ], good);
  assert.equal(cfg.mail.transport === "smtp" && cfg.mail.password, "from-file");
  const open = testDeps({ fs: debianFs({ files, modes: { "/etc/php-relaunch/smtp.pw": 0o640 } }) });
  const refused = await rejected([
    URI,
    "--smtp-user",
    "alice",
    "--smtp-password-file",
    "/etc/php-relaunch/smtp.pw",
  ], open);
  assert.match(
    refused.err,
    /Refusing SMTP password file "\/etc\/php-relaunch\/smtp\.pw": mode 0640 lets others read it; chmod 600 it/,
  );
  const check: string[] = [];
  await run([
    "check-config",
    URI,
    "--smtp-user",
    "alice",
    "--smtp-password-file",
    "/etc/php-relaunch/smtp.pw",
  ], { ...good, stdout: (t) => check.push(t) });
  assert.match(check.join(""), /localhost:25 \(TLS auto, as alice\)/);
  assert.doesNotMatch(check.join(""), /from-file/, "check-config never prints the password");
});

Deno.test("sendmail transport: one of the paths the run permission allows, present", async () => {
  const deps = testDeps({ fs: debianFs({ executables: ["/usr/sbin/sendmail"] }) });
  const cfg = await config([URI, "--mail-transport", "sendmail"], deps);
  assert.deepEqual(cfg.mail, { transport: "sendmail", path: "/usr/sbin/sendmail" });
});

Deno.test("exit codes: --help, README and the program say the same numbers", async () => {
  const { ExitCode } = await import("../src/shared/errors.ts");
  const help = [...(USAGE.split("Exit codes:")[1] ?? "").matchAll(/^ {2}(\d+) {2}/gm)].map((m) =>
    Number(m[1])
  );
  assert.deepEqual(help, [0, 1, 2, 3, 4, 7]);
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const table = readme.split("## Exit codes")[1]?.split("\n## ")[0] ?? "";
  assert.deepEqual([...table.matchAll(/^\| (\d+) +\|/gm)].map((m) => Number(m[1])), help);
  assert.deepEqual(Object.values(ExitCode).sort((a, b) => a - b), help);
});
