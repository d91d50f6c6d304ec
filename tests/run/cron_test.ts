import assert from "node:assert/strict";
import type { AlertmanagerAlert } from "../../src/alert/outbox.ts";
import { memoryPauses } from "../../src/run/pause_file.ts";
import { parseCommandLine } from "../../src/cli.ts";
import { loadConfig } from "../../src/config/load.ts";
import type { Mail, Mailer } from "../../src/shared/deps.ts";
import { probeOnce, watchRun } from "../../src/run/cron.ts";
import { fileStateStore, freshMemory, memoryStateStore } from "../../src/run/state.ts";
import { memoryIncidentLog } from "../../src/record/incidents.ts";
import { memoryOutbox } from "../../src/alert/outbox.ts";
import { FpmHost } from "../support/fpm_host.ts";
import {
  actions,
  captureLogs,
  debianFs,
  FakeClock,
  fakeMailer,
  fetchErrors,
  hangingMailer,
  type HttpStep,
  memoryLocks,
  scriptedHttp,
  testDeps,
  untagged,
  untaggedOrPlain,
  until,
} from "../support/fakes.ts";

const URI = "http://127.0.0.1:8889/php-heartbeat.php";

/** What php-fpm8.2 -t prints about a broken pool file (Debian 12, PHP 8.2). */
const BROKEN_TEST = [
  "[27-Nov-2026 20:03:52] ERROR: [/etc/php/8.2/fpm/pool.d/www.conf:2] unknown entry 'foo'",
  "[27-Nov-2026 20:03:52] ERROR: Unable to include /etc/php/8.2/fpm/pool.d/www.conf from /etc/php/8.2/fpm/php-fpm.conf at line 2",
  "[27-Nov-2026 20:03:52] ERROR: failed to load configuration file '/etc/php/8.2/fpm/php-fpm.conf'",
  "[27-Nov-2026 20:03:52] ERROR: FPM initialization failed",
  "",
].join("\n");

/**
 * php-fpm as the relaunch sees it: a master (1000) and two workers that ps shows; `startWorks`
 * false keeps it down once killed; `configBroken`, with a pool file its configuration test refuses.
 */
function fpmHost(startWorks = true, host = new FpmHost(), configBroken = false) {
  host.up("php8.2-fpm");
  if (!startWorks) host.startsToComeUp = Infinity;
  return host.runner((call) => {
    if (call.cmd !== "/usr/sbin/php-fpm8.2") return undefined;
    return configBroken ? { code: 78, stderr: BROKEN_TEST } : { code: 0 };
  });
}

async function setup(
  argv: string[],
  script: HttpStep[],
  opts: {
    mailFails?: boolean;
    startWorks?: boolean;
    configBroken?: boolean;
    mailer?: Mailer & { sent: Mail[] };
  } = {},
) {
  const clock = new FakeClock();
  const http = scriptedHttp(clock, script);
  const runner = fpmHost(opts.startWorks ?? true, new FpmHost(), opts.configBroken ?? false);
  const mailer = opts.mailer ?? fakeMailer(
    opts.mailFails ? new Error("connect ECONNREFUSED 127.0.0.1:25") : undefined,
  );
  const deps = testDeps({ clock, httpGet: http, runner, mailer });
  const { mode, raw } = parseCommandLine(argv);
  const cfg = await loadConfig(mode as "minute", raw, deps);
  const logs = captureLogs();
  // the policy's memory stays in the test: nothing is shared through /var/lib
  const store = memoryStateStore();
  const incidents = memoryIncidentLog();
  // and the lock: a real run's lock file is never touched
  const options = {
    store,
    incidents,
    outbox: memoryOutbox(),
    lock: memoryLocks(),
    pauses: memoryPauses(),
  };
  return {
    cfg,
    deps,
    clock,
    http,
    runner,
    mailer,
    logs,
    store,
    incidents,
    options,
    start: clock.now(),
  };
}

const ok = { status: 200, body: "127.0.0.1\n127.0.0.1\n", ms: 4 };
/** Three quick start attempts, with the policy's memory in `store`. */
const fastRelaunch = (store = memoryStateStore()) => ({
  store,
  incidents: memoryIncidentLog(),
  outbox: memoryOutbox(),
  lock: memoryLocks(),
  pauses: memoryPauses(),
  relaunch: {
    maxAttempts: 3,
    retryDelayMs: 2000,
    killRounds: 3,
    killPollMs: 100,
    startTimeoutMs: 10_000,
    toolTimeoutMs: 5000,
    verifyEveryMs: 500,
  },
});

Deno.test("healthy minute: 12 probes 5 s apart, one look at the master, nothing done, nothing mailed, exit 0", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [ok]);
  const deps = { ...s.deps, fs: debianFs({ files: { "/run/php/php8.2-fpm.pid": "1000\n" } }) };
  assert.equal(await watchRun(s.cfg, deps, s.options), 0);
  assert.equal(s.http.calls.length, 12);
  // the kernel's facts of every php-fpm8.2, then the title of the one root group leader
  const look = [
    "/usr/bin/ps -C php-fpm8.2 -o pid=,ppid=,pgid=,ruid=,euid=,stat=,time=,rss=,etimes=",
    "/usr/bin/ps -q 1000 -o pid=,args:255=,pid=",
  ];
  assert.deepEqual(s.runner.lines(), look, "found once; the pid file's hint agrees after");
  assert.equal((await s.store.load()).state.masterPid, 1000);
  assert.equal(s.mailer.sent.length, 0);
  assert.deepEqual(s.logs.lines(), []);
  assert.ok(s.clock.now() - s.start <= 60_000);
  // without a pid file (or with one that names another pid), a look every 30 s at most
  s.runner.calls.length = 0;
  await watchRun(s.cfg, s.deps, s.options);
  assert.deepEqual(s.runner.lines(), [...look, ...look]);
});

Deno.test("a single stray 502 is confirmed 1 s later and restarts nothing", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [ok, { status: 502 }, ok]);
  assert.equal(await watchRun(s.cfg, s.deps, s.options), 0);
  assert.deepEqual(actions(s.runner), []);
  assert.equal(s.mailer.sent.length, 0);
  assert.deepEqual(s.logs.lines(), []);
  assert.ok(s.clock.sleeps.includes(1000), `confirm delay of 1 s in ${s.clock.sleeps}`);
});

Deno.test("two 502s (a crash): restart once, one log line, one mail, then settle 10 s and keep watching", async () => {
  const bad = { status: 502, body: "<h1>502 Bad Gateway</h1>" };
  const s = await setup([URI, "5", "ops@example.com,dev@example.com"], [ok, ok, bad, bad, ok]);
  assert.equal(await watchRun(s.cfg, s.deps, s.options), 0);
  assert.deepEqual(s.logs.lines(), ["502 PHP restarted."]);
  assert.equal(
    s.runner.lines().filter((l) => l === "/usr/sbin/service php8.2-fpm start").length,
    1,
  );
  assert.ok(s.runner.lines().includes("/usr/bin/kill -KILL 1000 1001 1002"));
  assert.equal(s.mailer.sent.length, 1);
  const mail = s.mailer.sent[0]!;
  assert.match(mail.subject, /^web1 PHP restart \[php8\.2-fpm #\d{8}-\d{6}-\d{3}\]$/);
  assert.match(mail.text, /\nIncident: \d{8}-\d{6}-\d{3} \(php8\.2-fpm, php_down, resolved\)\n/);
  assert.deepEqual(mail.to, ["ops@example.com", "dev@example.com"]);
  assert.match(mail.text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ web1 502 PHP restarted\.\n/);
  assert.match(mail.text, /Probe: HTTP 502/);
  assert.match(
    mail.text,
    /php8\.2-fpm \(sysv\): running again after the kill rung; 3 processes killed, 1 start attempts/,
  );
  assert.match(mail.text, /Down for 1 s/);
  assert.ok(s.clock.sleeps.includes(10_000), `settle of 10 s in ${s.clock.sleeps}`);
  assert.ok(s.clock.now() - s.start <= 60_000);
});

Deno.test("--metrics-file: the run's probes and its restart, for node_exporter's textfile collector", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = { status: 502 };
    const s = await setup(
      [URI, "5", "", "--metrics-file", `${dir}/php-relaunch.prom`],
      [ok, bad, bad, ok],
    );
    assert.equal(await watchRun(s.cfg, s.deps, s.options), 0);
    const text = await Deno.readTextFile(`${dir}/php-relaunch.prom`);
    const value = (line: string) =>
      new RegExp(`^${line.replace(/[{}.+]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1];
    assert.equal(value('php_relaunch_restarts_total{target="php8.2-fpm",result="ok"}'), "1");
    assert.equal(
      value('php_relaunch_probes_total{target="php8.2-fpm",verdict="php_down",answer="502"}'),
      "2",
    );
    assert.ok(
      Number(
        value('php_relaunch_probes_total{target="php8.2-fpm",verdict="healthy",answer="200"}'),
      ) >= 2,
      "the restart's own verification probe is not counted, the loop's are",
    );
    assert.ok(
      Number(value('php_relaunch_last_restart_timestamp_seconds{target="php8.2-fpm"}')) > 0,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("no answer within the timeout: restart", async () => {
  const s = await setup([URI, "5", ""], [{ error: fetchErrors.timeout(), ms: 5000 }, ok]);
  assert.equal(await watchRun(s.cfg, s.deps, s.options), 0);
  assert.deepEqual(s.logs.lines(), ["timeout PHP restarted."]);
  assert.equal(s.mailer.sent.length, 0, "'' means no mail");
});

for (
  const [name, step, code, subject, pattern] of [
    [
      "refused",
      { error: fetchErrors.refused() },
      7,
      "PHP heartbeat unreachable",
      /nginx or the address is down/,
    ],
    [
      "unknown host",
      { error: fetchErrors.dns() },
      7,
      "PHP heartbeat unreachable",
      /does not resolve/,
    ],
    [
      "444 (closed)",
      { error: fetchErrors.closed() },
      4,
      "PHP heartbeat misconfigured",
      /444/,
    ],
    ["404", { status: 404 }, 4, "PHP heartbeat misconfigured", /404/],
    [
      "302",
      { status: 302, location: "/login" },
      4,
      "PHP heartbeat misconfigured",
      /not redirect/,
    ],
    [
      "TLS on a plain port",
      { error: fetchErrors.tls() },
      4,
      "PHP heartbeat misconfigured",
      /scheme and port/,
    ],
  ] as const
) {
  Deno.test(`${name}: never restarts, logs why, mails once, exit ${code}`, async () => {
    const s = await setup([URI, "5", "ops@example.com"], [ok, step as HttpStep]);
    assert.equal(await watchRun(s.cfg, s.deps, s.options), code);
    assert.deepEqual(actions(s.runner), []);
    assert.equal(s.http.calls.length, 2, "the run stops at the problem");
    const lines = s.logs.lines();
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /PHP not restarted/);
    assert.match(lines[0]!, pattern);
    assert.deepEqual(untagged(s.mailer.sent), [`web1 ${subject}`]);
  });
}

Deno.test("php-fpm that will not come back: 3 restarts, then one 'given up' alert, exit 3", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }], { startWorks: false });
  const options = fastRelaunch();
  assert.equal(await watchRun(s.cfg, s.deps, options), 3);
  // 3 restarts of 3 start attempts each
  assert.equal(s.runner.lines().filter((l) => l.endsWith(" start")).length, 9);
  assert.match(s.logs.lines()[0]!, /^502 PHP restart failed \(php8\.2-fpm: no php-fpm8\.2 master/);
  // its configuration passes php-fpm's test: these starts count
  assert.ok(
    s.runner.lines().includes("/usr/sbin/php-fpm8.2 -t -y /etc/php/8.2/fpm/php-fpm.conf"),
    s.runner.lines().join("\n"),
  );
  assert.deepEqual(untagged(s.mailer.sent), [
    "web1 PHP restart failed",
    "web1 PHP restart failed",
    "web1 PHP restart failed",
    "web1 PHP restart given up",
  ]);
  assert.match(s.mailer.sent[3]!.text, /3 restarts in 15 min did not keep it up/);
  assert.equal(s.mailer.sent[3]!.text.match(/^Restart at /gm)?.length, 3, "the history");
});

Deno.test("a configuration php-fpm's test rejects: one start, not counted; the next once the test passes, at once", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }]);
  const host = new FpmHost();
  host.up("php8.2-fpm");
  let broken = true;
  const runner = host.runner((call) => {
    if (call.cmd === "/usr/sbin/service" && call.args[1] === "start" && broken) {
      // Debian's init script tests the configuration first, and starts nothing
      return { code: 1 };
    }
    if (call.cmd !== "/usr/sbin/php-fpm8.2") return undefined;
    return broken ? { code: 78, stderr: BROKEN_TEST } : { code: 0 };
  });
  const deps = { ...s.deps, runner };
  const options = fastRelaunch();
  assert.equal(await watchRun(s.cfg, deps, options), 3);
  assert.deepEqual(options.incidents.records[0]?.cannotStart, [
    "[/etc/php/8.2/fpm/pool.d/www.conf:2] unknown entry 'foo'",
    "Unable to include /etc/php/8.2/fpm/pool.d/www.conf from /etc/php/8.2/fpm/php-fpm.conf at line 2",
  ], "the test's generic last lines are left out");
  // php-fpm's own test says why, in the log line, the alert and the incident
  assert.match(
    s.logs.lines()[0]!,
    /; php-fpm8\.2 cannot start: \[\/etc\/php\/8\.2\/fpm\/pool\.d\/www\.conf:2\] unknown entry 'foo'\); the next start is made once php-fpm8\.2 -t passes\.$/,
  );
  assert.match(
    s.mailer.sent[0]!.text,
    /Configuration test \(\/usr\/sbin\/php-fpm8\.2 -t -y \/etc\/php\/8\.2\/fpm\/php-fpm\.conf\):\n {2}\[\/etc\/php\/8\.2\/fpm\/pool\.d\/www\.conf:2\] unknown entry 'foo'\n {2}Unable to include/,
  );
  assert.match(
    s.mailer.sent[0]!.text,
    /Restarts in the last 15 min: 0 of at most 3 \(a start the configuration test refuses is not counted/,
  );
  // the rest of the minute: one restart, never given up, the test asked again now and then
  assert.equal(
    s.logs.lines().filter((l) => /PHP restart failed/.test(l)).length,
    1,
    s.logs.lines().join("\n"),
  );
  assert.deepEqual(untagged(s.mailer.sent), ["web1 PHP restart failed"]);
  const tests = runner.lines().filter((l) => l.endsWith(" -t -y /etc/php/8.2/fpm/php-fpm.conf"));
  assert.ok(tests.length >= 5 && tests.length <= 13, `${tests.length} tests in a minute`);
  let { state } = await options.store.load();
  assert.notEqual(state.configRejectedAt, null);
  assert.equal(state.givenUpAt, null);

  // the operator fixes the pool file 2 min later: the next run's first failure restarts at once
  s.clock.advance(2 * 60_000);
  broken = false;
  const fixed = captureLogs();
  const http = scriptedHttp(s.clock, [{ status: 502 }, ok]);
  assert.equal(await watchRun(s.cfg, { ...deps, httpGet: http }, options), 0);
  assert.deepEqual(fixed.lines().slice(0, 2), [
    "php-fpm's configuration test passes again: restarting, with the restart budget whole.",
    "502 PHP restarted.",
  ]);
  ({ state } = await options.store.load());
  assert.equal(state.configRejectedAt, null);
  assert.equal(state.restarts.length, 1, "the budget whole again, then this restart");

  // a crash 30 s after the fix: restarted at once, as any crash
  s.clock.advance(30_000);
  const crash = captureLogs();
  const again = scriptedHttp(s.clock, [{ status: 502 }, { status: 502 }, ok]);
  assert.equal(await watchRun(s.cfg, { ...deps, httpGet: again }, options), 0);
  assert.deepEqual(crash.lines(), ["502 PHP restarted."]);
});

Deno.test("the memory carries over to the next cron run: given up stays given up", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }], { startWorks: false });
  const options = fastRelaunch();
  await watchRun(s.cfg, s.deps, options);
  const before = actions(s.runner).length;
  s.mailer.sent.length = 0;
  s.clock.advance(60_000);
  assert.equal(await watchRun(s.cfg, s.deps, options), 3);
  assert.equal(actions(s.runner).length, before, "no restart in the next run");
  assert.deepEqual(s.mailer.sent, [], "no second 'given up'");
});

Deno.test("given up is not forever: a cron run 5 min later makes one attempt on the last rung", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }], { startWorks: false });
  const options = fastRelaunch();
  await watchRun(s.cfg, s.deps, options);
  assert.match(s.mailer.sent[3]!.text, /next single attempt at \d{4}-\d\d-\d\dT/);
  s.mailer.sent.length = 0;
  s.clock.advance(5 * 60_000);
  const runner = fpmHost(true);
  const deps = { ...s.deps, runner, httpGet: scriptedHttp(s.clock, [{ status: 502 }, ok]) };
  assert.equal(await watchRun(s.cfg, deps, options), 0);
  assert.equal(runner.lines().filter((l) => l.endsWith(" start")).length, 1, "one attempt");
  assert.deepEqual(untagged(s.mailer.sent), ["web1 PHP recovered"]);
  assert.match(s.mailer.sent[0]!.text, /restarted by retry 1 after giving up: healthy again/);
  const { state } = await options.store.load();
  assert.equal(state.givenUpAt, null, "armed again");
  assert.equal(state.retryAt, null);
});

Deno.test("Alertmanager: a given-up incident fires, repeats, and resolves; one alert per incident", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }], { startWorks: false });
  const posts: { url: string; at: number; alerts: AlertmanagerAlert[] }[] = [];
  const deps = {
    ...s.deps,
    webhookPost: (url: URL, json: string) => {
      posts.push({ url: url.href, at: s.clock.now(), alerts: JSON.parse(json) });
      return Promise.resolve(200);
    },
  };
  const cfg = { ...s.cfg, alertmanager: new URL("http://127.0.0.1:9093/am/") };
  const options = { ...fastRelaunch(), relaunch: { ...fastRelaunch().relaunch, maxAttempts: 1 } };
  await watchRun(cfg, deps, options);
  assert.ok(posts.length >= 2, `posts: ${posts.length}`);
  assert.ok(posts.every((p) => p.url === "http://127.0.0.1:9093/am/api/v2/alerts"));
  const alerts = posts.flatMap((p) => p.alerts.map((a) => ({ ...a, at: p.at })));
  const ids = new Set(alerts.map((a) => a.labels["incident"]));
  assert.equal(ids.size, 1, "every post is the same incident");
  assert.deepEqual(
    { ...alerts[0]!.labels, incident: "" },
    {
      alertname: "PhpFpmDown",
      host: "web1",
      target: "php8.2-fpm",
      kind: "php_down",
      incident: "",
      severity: "critical",
    },
  );
  for (const a of alerts) {
    assert.ok(Date.parse(a.endsAt) > a.at, "firing: ends in the future unless repeated");
    assert.ok(Date.parse(a.startsAt) <= a.at);
  }
  // given up: the next cron runs repeat it, at most once a minute, and tell nobody else
  const mails = s.mailer.sent.length;
  const before = posts.length;
  s.clock.advance(30_000);
  await watchRun(cfg, deps, options);
  assert.ok(posts.length > before, "repeated while firing");
  assert.equal(s.mailer.sent.length, mails, "repeats are for Alertmanager only");
  const repeats = posts.slice(before).map((p) => p.at);
  repeats.slice(1).forEach((at, i) => assert.ok(at - repeats[i]! >= 60_000));
  // healthy again (fixed by hand): resolved, endsAt now
  s.clock.advance(60_000);
  const healthy = { ...deps, httpGet: scriptedHttp(s.clock, [ok]) };
  await watchRun(cfg, healthy, options);
  const last = posts.at(-1)!.alerts[0]!;
  assert.equal(last.labels["incident"], [...ids][0]);
  assert.ok(Date.parse(last.endsAt) <= posts.at(-1)!.at, "resolved");
  assert.match(last.annotations["summary"]!, /PHP recovered/);
});

Deno.test("paused: a crash is probed and logged, never restarted or alerted; the pause's end is told once", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }]);
  const pauses = s.options.pauses;
  const until = s.clock.now() + 90_000;
  await pauses.write("php8.2-fpm", { at: s.clock.now(), until, by: "alice", reason: "deploy 42" });
  assert.equal(await watchRun(s.cfg, s.deps, s.options), 3, "still down: the exit code says so");
  assert.deepEqual(actions(s.runner), [], "nothing restarted");
  assert.equal(s.mailer.sent.length, 0, "nothing alerted");
  assert.ok(s.http.calls.length >= 10, "probes go on");
  assert.match(s.logs.lines()[0]!, /^502 while paused until .* \(deploy 42\): not acted on\.$/);
  assert.equal(
    s.logs.lines().filter((l) => /while paused/.test(l)).length,
    1,
    "each answer once, not once a probe",
  );
  const { state, counters, lastProbe } = await s.options.store.load();
  assert.equal(state.failures, 0, "no run of failures is carried past the pause");
  assert.equal(lastProbe?.label, "502", "status sees the probes");
  assert.ok((counters.probes["php_down 502"] ?? 0) >= 10, JSON.stringify(counters.probes));
  // the next run finds it expired: the end is told, the crash is restarted as usual
  s.clock.advance(60_000);
  const deps = {
    ...s.deps,
    httpGet: scriptedHttp(s.clock, [{ status: 502 }, { status: 502 }, ok]),
  };
  assert.equal(await watchRun(s.cfg, deps, s.options), 0);
  assert.equal(pauses.items.size, 0, "the expired pause is removed");
  assert.deepEqual(untaggedOrPlain(s.mailer.sent), [
    "web1 PHP watchdog resumed",
    "web1 PHP restart",
  ]);
  assert.match(s.mailer.sent[0]!.text, /Pause by alice \(deploy 42\) expired/);
});

Deno.test("a restart under way is on disk for `status` while it lasts, and cleared after", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-restarting-" });
  try {
    const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }, { status: 502 }, ok]);
    const store = fileStateStore(`${dir}/php8.2-fpm.json`);
    const seen: (number | null)[] = [];
    const runner = fpmHost(true);
    const deps = {
      ...s.deps,
      runner: {
        run: (cmd: string, args: readonly string[], opts: { timeoutMs: number }) => {
          if (cmd.endsWith("service")) {
            const saved = JSON.parse(Deno.readTextFileSync(`${dir}/php8.2-fpm.json`));
            seen.push(saved.restartingSince);
          }
          return runner.run(cmd, args, opts);
        },
      },
    };
    assert.equal(await watchRun(s.cfg, deps, { ...s.options, store }), 0);
    assert.ok(seen.length > 0 && seen.every((at) => typeof at === "number"), String(seen));
    assert.equal((await store.load()).restartingSince, null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a crash by the OOM killer: the kernel's line is in the log line, the mail and the incident", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }, { status: 502 }, ok]);
  const at = new Date(s.clock.now() - 2000).toISOString().replace("Z", "+00:00");
  const kern =
    `${at} web1 kernel: [81234.567890] Out of memory: Killed process 48214 (php-fpm8.2) total-vm:2271044kB, anon-rss:1987360kB, file-rss:13376kB, shmem-rss:1024kB, UID:33 pgtables:4052kB oom_score_adj:0\n`;
  const deps = { ...s.deps, fs: debianFs({ files: { "/var/log/kern.log": kern } }) };
  assert.equal(await watchRun(s.cfg, deps, s.options), 0);
  assert.match(
    s.logs.lines()[0]!,
    /^502 PHP restarted \(php-fpm8\.2 pid 48214 killed by the OOM killer at \S+, 1\.9 GiB resident\)\.$/,
  );
  assert.match(s.mailer.sent[0]!.text, /\nphp-fpm8\.2 pid 48214 killed by the OOM killer at /);
  assert.deepEqual(s.incidents.records[0]?.oomKills?.map((k) => [k.pid, k.rssKb]), [
    [48214, 1987360 + 13376 + 1024],
  ]);
});

Deno.test("a failed mail is logged and queued, and changes nothing else", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 503 }, { status: 503 }, ok], {
    mailFails: true,
  });
  assert.equal(await watchRun(s.cfg, s.deps, s.options), 0);
  const lines = s.logs.lines();
  assert.equal(lines[0], "503 PHP restarted.");
  assert.match(
    lines[1]!,
    /Mail to ops@example\.com through localhost:25 \(TLS auto\) failed, queued for the next run: connect ECONNREFUSED/,
  );
  assert.ok(s.http.calls.length > 3, "probing went on after the failed mail");
  const queued = [...s.options.outbox.items.values()];
  assert.equal(queued.length, 1);
  assert.equal(queued[0]?.delivery.channel, "mail");
  assert.equal(queued[0]?.attempts, 1);
});

Deno.test("--run-for 10 (mcron every 10 s): two probes, though taking the lock takes time", async () => {
  const s = await setup([URI, "5", "", "--run-for", "10"], [ok]);
  const locks = memoryLocks();
  // a real lock and state file take a few milliseconds: the probes stay on the run's grid
  const slow = Object.assign((path: string) => {
    s.clock.advance(3);
    return locks(path);
  }, { holder: (path: string) => Promise.resolve(locks.holders.get(path) ?? null) });
  assert.equal(await watchRun(s.cfg, s.deps, { ...s.options, lock: slow }), 0);
  assert.equal(s.http.calls.length, 2);
});

Deno.test("php-cgi is relaunched too with the 4th argument", async () => {
  const clock = new FakeClock();
  const http = scriptedHttp(clock, [{ status: 502 }, { status: 502 }, ok]);
  const host = new FpmHost();
  const cgi = host.up("php8.2-cgi");
  const runner = fpmHost(true, host);
  const { fs } = testDeps();
  const deps = testDeps({
    clock,
    httpGet: http,
    runner,
    fs: {
      ...fs,
      listDir: (p) => Promise.resolve(p === "/etc/init.d" ? ["php8.2-fpm", "php8.2-cgi"] : []),
      isExecutable: (p) => p === "/usr/bin/php-cgi8.2" ? Promise.resolve(true) : fs.isExecutable(p),
    },
  });
  const { mode, raw } = parseCommandLine([URI, "5", "", "1"]);
  const cfg = await loadConfig(mode as "minute", raw, deps);
  captureLogs();
  assert.equal(
    await watchRun(cfg, deps, {
      store: memoryStateStore(),
      incidents: memoryIncidentLog(),
      outbox: memoryOutbox(),
      lock: memoryLocks(),
      pauses: memoryPauses(),
    }),
    0,
  );
  const lines = runner.lines();
  assert.ok(cgi === 0 && lines.includes("/usr/bin/kill -KILL 1000 1001"), lines.join("\n"));
  assert.ok(lines.includes("/usr/sbin/service php8.2-cgi start"));
  assert.ok(
    lines.indexOf("/usr/sbin/service php8.2-fpm start") <
      lines.indexOf("/usr/sbin/service php8.2-cgi start"),
  );
});

Deno.test("--once: the verdict is the exit code; no restart, no mail", async (t) => {
  for (
    const [step, code] of [
      [ok, 0],
      [{ status: 502 }, 3],
      [{ error: fetchErrors.timeout(), ms: 5000 }, 3],
      [{ error: fetchErrors.refused() }, 7],
      [{ error: fetchErrors.closed() }, 4],
    ] as const
  ) {
    await t.step(`exit ${code}`, async () => {
      const s = await setup(["--once", URI, "5", "ops@example.com"], [step as HttpStep]);
      assert.equal(await probeOnce(s.cfg, s.deps, s.options), code);
      assert.equal(s.http.calls.length, 1);
      assert.equal(s.runner.calls.length, 0, "--once only probes");
      assert.equal(s.mailer.sent.length, 0);
      assert.equal(s.deps.out.length, 1);
    });
  }
});

Deno.test("--once --restart: restarts and mails what it did", async () => {
  const s = await setup(["--once", "--restart", URI, "5", "ops@example.com"], [
    { status: 502 },
    ok,
  ]);
  assert.equal(await probeOnce(s.cfg, s.deps, s.options), 0);
  assert.ok(s.runner.lines().includes("/usr/sbin/service php8.2-fpm start"));
  assert.deepEqual(untagged(s.mailer.sent), ["web1 PHP restart"]);
});

Deno.test("cron run: a lock watch mode holds means nothing is probed, restarted or written; exit 0", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }]);
  const lockFile = s.cfg.targets[0]!.lockFile;
  const held = memoryLocks(lockFile);
  held.holders.set(lockFile, "watch 4242");
  assert.equal(await watchRun(s.cfg, s.deps, { ...s.options, lock: held }), 0);
  assert.equal(s.http.calls.length, 0);
  assert.equal(s.runner.calls.length, 0, "not even a look");
  assert.equal(s.clock.now(), s.start, "at once: watch mode never lets go");
  assert.deepEqual(s.logs.lines(), [
    `php-relaunch watch holds ${lockFile}; this run does nothing.`,
  ]);
  const free = memoryLocks();
  assert.equal(await watchRun(s.cfg, s.deps, { ...s.options, lock: free }), 3);
  assert.deepEqual(free.taken, [lockFile], "the same lock, taken this time");
  assert.equal(free.holders.get(lockFile), `cron ${Deno.pid}`, "a cron run says it holds it");
});

Deno.test("cron run: a lock another cron run holds is waited for; the rest of the minute is watched", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [{ status: 502 }, { status: 502 }, ok]);
  const lockFile = s.cfg.targets[0]!.lockFile;
  const held = memoryLocks(lockFile);
  held.holders.set(lockFile, "cron 4242");
  // the run before, still restarting, lets go 20 s into this run's minute
  const clock = s.clock;
  const sleep = clock.sleep.bind(clock);
  clock.sleep = async (ms: number, signal?: AbortSignal) => {
    await sleep(ms, signal);
    if (clock.now() - s.start >= 20_000) held.held.delete(lockFile);
  };
  assert.equal(await watchRun(s.cfg, s.deps, { ...s.options, lock: held }), 0);
  assert.ok(s.http.calls.length >= 3, "probed once the lock was free");
  assert.ok(s.runner.lines().includes("/usr/sbin/service php8.2-fpm start"), "and restarted");
  assert.ok(clock.now() - s.start <= 60_000 + 10_000, "within its own minute (and a restart)");
  assert.match(s.logs.lines()[0]!, /^Another run holds .*; waiting for it\.$/);

  // held for the whole minute: this run gives up at its end, with one line
  const s2 = await setup([URI, "5", "ops@example.com"], [{ status: 502 }]);
  const stuck = memoryLocks(lockFile);
  assert.equal(await watchRun(s2.cfg, s2.deps, { ...s2.options, lock: stuck }), 0);
  assert.equal(s2.http.calls.length, 0);
  assert.ok(s2.clock.now() - s2.start <= 60_000, "never past its own period");
  assert.match(s2.logs.lines().at(-1)!, /still holds .* at the end of this run's period/);

  // watch mode takes it over while this run waits: this run stops waiting at once
  const s3 = await setup([URI, "5", "ops@example.com"], [{ status: 502 }]);
  const taken = memoryLocks(lockFile);
  taken.holders.set(lockFile, "cron 4242");
  const sleep3 = s3.clock.sleep.bind(s3.clock);
  s3.clock.sleep = async (ms: number, signal?: AbortSignal) => {
    await sleep3(ms, signal);
    if (s3.clock.now() - s3.start >= 5000) taken.holders.set(lockFile, "watch 4343");
  };
  assert.equal(await watchRun(s3.cfg, s3.deps, { ...s3.options, lock: taken }), 0);
  assert.ok(
    s3.clock.now() - s3.start < 10_000,
    `stopped waiting after ${s3.clock.now() - s3.start} ms`,
  );
  assert.match(s3.logs.lines().at(-1)!, /php-relaunch watch holds .*; this run does nothing\./);
});

Deno.test("cron run: a failure seen after the run's period is left to the next run, already due", async () => {
  // hung from the last probe of the minute: its timeout (one is enough) ends at 60 s, and a
  // restart begun then could take until 70 s (start_timeout 10 s), past the run's 65 s
  const s = await setup([URI, "5", "ops@example.com"], [ok]);
  const late = scriptedHttp(s.clock, [
    ...Array.from({ length: 11 }, () => ok),
    { error: fetchErrors.timeout(), ms: 5000 },
  ]);
  const deps = { ...s.deps, httpGet: late };
  await watchRun(s.cfg, deps, s.options);
  assert.equal(s.runner.calls.filter((c) => c.cmd.endsWith("service")).length, 0);
  assert.ok(
    s.logs.lines().some((l) => /the next run restarts it/.test(l)),
    s.logs.lines().join("\n"),
  );
  const { state } = await s.options.store.load();
  assert.ok(state.failures >= 1, "the failure stays counted for the next run");
});

Deno.test("cron run: a mail server that never answers delays neither the next probe nor the next restart", async () => {
  const bad = { status: 502 };
  const mailer = hangingMailer();
  const s = await setup(
    [URI, "5", "ops@example.com"],
    [ok, bad, bad, ok, ok, ok, bad, bad, ok],
    { mailer },
  );
  const starts = () => s.runner.lines().filter((l) => l.endsWith(" start")).length;
  const run = watchRun(s.cfg, s.deps, s.options);
  try {
    assert.ok(
      await until(() => starts() === 2 && mailer.sent.length === 2 && s.http.calls.length >= 10),
      `on time while the mail hangs: ${starts()} restarts, ${mailer.sent.length} mails, ${s.http.calls.length} probes`,
    );
  } finally {
    mailer.release();
  }
  assert.equal(await run, 0);
});

Deno.test("a 502 with php-fpm's master gone is a certain crash: restarted at once, no confirmation", async () => {
  const clock = new FakeClock();
  const host = new FpmHost();
  const answers = fpmHost(true, host);
  // the master seen before, gone now (its workers still serve a moment)
  const master = host.master("php8.2-fpm")!.pid;
  host.procs = host.procs.filter((p) => p.pid !== master);
  const http = scriptedHttp(clock, [{ status: 502 }, ok]);
  const deps = testDeps({
    clock,
    httpGet: http,
    runner: answers,
    // the pid file still names it: it decides nothing
    fs: debianFs({ files: { "/run/php/php8.2-fpm.pid": `${master}\n` } }),
  });
  const { mode, raw } = parseCommandLine([URI, "5", "ops@example.com"]);
  const cfg = await loadConfig(mode as "minute", raw, deps);
  const logs = captureLogs();
  const seen = () => {
    const memory = freshMemory();
    memory.state.masterPid = master;
    return memoryStateStore(memory);
  };
  const options = {
    store: seen(),
    incidents: memoryIncidentLog(),
    outbox: memoryOutbox(),
    lock: memoryLocks(),
    pauses: memoryPauses(),
  };
  assert.equal(await watchRun(cfg, deps, options), 0);
  assert.deepEqual(logs.lines(), ["502 PHP restarted."]);
  assert.ok(!clock.sleeps.includes(1000), `no 1 s confirmation in ${clock.sleeps}`);
  assert.ok(answers.lines().includes("/usr/sbin/service php8.2-fpm start"));
  assert.ok(
    answers.lines().includes(`/usr/bin/kill -KILL ${master + 1} ${master + 2}`),
    "its orphaned workers, by the group it led",
  );

  // a master alive (the one just started): the same 502 is confirmed first, as a stray one
  const again = scriptedHttp(clock, [{ status: 502 }, ok]);
  const calm = captureLogs();
  const live = host.master("php8.2-fpm")!.pid;
  const store = memoryStateStore();
  await store.save({ ...freshMemory(), state: { ...freshMemory().state, masterPid: live } });
  assert.equal(await watchRun(cfg, { ...deps, httpGet: again }, { ...options, store }), 0);
  assert.deepEqual(calm.lines(), [], "a single 502 while the master lives restarts nothing");
});

Deno.test("two root masters of one configuration: said once, and the one last seen is acted on", async () => {
  const s = await setup([URI, "5", "ops@example.com"], [ok]);
  const host = new FpmHost();
  const first = host.up("php8.2-fpm");
  host.up("php8.2-fpm");
  const memory = freshMemory();
  memory.state.masterPid = first;
  const store = memoryStateStore(memory);
  await watchRun(s.cfg, { ...s.deps, runner: host.runner() }, { ...s.options, store });
  const warned = s.logs.lines().filter((l) => /root masters of/.test(l));
  assert.deepEqual(warned, [
    `2 root masters of /etc/php/8.2/fpm/php-fpm.conf run: php-relaunch acts on ${first} (the one it last saw); stop the other(s).`,
  ]);
  assert.equal((await store.load()).state.masterPid, first);
});

Deno.test("a 502 while another process holds the pool's socket: told as it is, never restarted", async () => {
  const clock = new FakeClock();
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  const SOCK = "/run/php/php8.2-fpm.sock";
  const holder = 4242;
  // the file at the socket's path is the one www-data bound
  const sockets: Record<string, number> = { [SOCK]: 502 };
  const answers = host.runner((call) => {
    if (call.cmd === "/usr/bin/ss") {
      // the kernel names both by the path they were bound to: php-fpm's, moved aside, first
      return {
        code: 0,
        stdout:
          `u_str LISTEN 0 5 ${SOCK} 91 * 0 users:(("php-fpm8.2",pid=${master},fd=7)) <-> ino:501 dev:0/25 peers:\n` +
          `u_str LISTEN 0 5 ${SOCK}.x 92 * 0 users:(("php-fpm8.2",pid=${master},fd=8)) <-> ino:503 dev:0/25 peers:\n` +
          `u_str LISTEN 0 5 ${SOCK} 93 * 0 users:(("python3",pid=${holder},fd=3)) <-> ino:502 dev:0/25 peers:\n`,
      };
    }
    if (call.cmd === "/usr/bin/ps" && call.args.join(" ") === `-o ruid= -q ${holder}`) {
      return { code: 0, stdout: "   33\n" };
    }
    return undefined;
  });
  const deps = testDeps({
    clock,
    httpGet: scriptedHttp(clock, Array(30).fill({ status: 502 })),
    runner: answers,
    fs: debianFs({
      executables: ["/usr/bin/ss"],
      sockets,
      files: {
        "/etc/php/8.2/fpm/php-fpm.conf":
          `[global]\npid = /run/php/php8.2-fpm.pid\n[www]\nlisten = ${SOCK}\n`,
      },
    }),
  });
  const { mode, raw } = parseCommandLine([URI, "5", "ops@example.com"]);
  const cfg = await loadConfig(mode as "minute", raw, deps);
  const logs = captureLogs();
  const mailer = fakeMailer();
  const options = {
    store: memoryStateStore(),
    incidents: memoryIncidentLog(),
    outbox: memoryOutbox(),
    lock: memoryLocks(),
    pauses: memoryPauses(),
  };
  await watchRun(cfg, { ...deps, mailer }, options);
  const run = answers.lines();
  assert.ok(run.includes(`/usr/bin/ss -xlpeH src ${SOCK}`), run.join("\n"));
  assert.ok(!run.some((l) => /service php8.2-fpm|kill -/.test(l)), run.join("\n"));
  assert.ok(
    logs.lines().some((l) =>
      l.includes(`held by pid 4242 (python3, uid 33), not by php-fpm's master ${master}`)
    ),
    logs.lines().join("\n"),
  );
  assert.equal(mailer.sent.length, 1, "one alert for the incident");

  // php-fpm's own socket moved back to its path: the same 502s are php-fpm's, and restarted
  sockets[SOCK] = 501;
  const again = captureLogs();
  const http = scriptedHttp(clock, [{ status: 502 }, { status: 502 }, ok]);
  await watchRun(cfg, { ...deps, httpGet: http, mailer }, {
    ...options,
    store: memoryStateStore(),
  });
  assert.ok(
    answers.lines().includes("/usr/sbin/service php8.2-fpm start"),
    answers.lines().join("\n"),
  );
  assert.deepEqual(again.lines(), ["502 PHP restarted."]);
});

Deno.test("a folder at the pool's socket path is told, never restarted; a crashed master's own workers are no impostor", async () => {
  const SOCK = "/run/php/php8.2-fpm.sock";
  const conf = `[global]\npid = /run/php/php8.2-fpm.pid\n[www]\nlisten = ${SOCK}\n`;
  const run = async (fs: ReturnType<typeof debianFs>, host: FpmHost, known: number | null) => {
    const clock = new FakeClock();
    const answers = host.runner((call) => {
      if (call.cmd !== "/usr/bin/ss") return undefined;
      // the socket's listeners: the master's first worker, alone (its master gone)
      const worker = host.procs.find((p) => p.ruid === 33)?.pid ?? 0;
      return {
        code: 0,
        stdout:
          `u_str LISTEN 0 5 ${SOCK} 91 * 0 users:(("php-fpm8.2",pid=${worker},fd=7)) <-> ino:501 dev:0/25 peers:\n`,
      };
    });
    const deps = testDeps({
      clock,
      httpGet: scriptedHttp(clock, [{ status: 502 }, { status: 502 }, ok]),
      runner: answers,
      fs,
    });
    const { mode, raw } = parseCommandLine([URI, "5", "ops@example.com"]);
    const cfg = await loadConfig(mode as "minute", raw, deps);
    const logs = captureLogs();
    const memory = freshMemory();
    memory.state.masterPid = known;
    await watchRun(cfg, { ...deps, mailer: fakeMailer() }, {
      store: memoryStateStore(memory),
      incidents: memoryIncidentLog(),
      outbox: memoryOutbox(),
      lock: memoryLocks(),
      pauses: memoryPauses(),
    });
    return { logs: logs.lines(), run: answers.lines() };
  };
  // www-data put a folder where php-fpm's socket was: php-fpm could not bind again
  const folder = new FpmHost();
  const live = folder.up("php8.2-fpm");
  const r = await run(
    debianFs({
      executables: ["/usr/bin/ss"],
      files: { "/etc/php/8.2/fpm/php-fpm.conf": conf },
      dirs: { [SOCK]: [] },
    }),
    folder,
    live,
  );
  assert.ok(!r.run.some((l) => /service php8.2-fpm|kill -/.test(l)), r.run.join("\n"));
  assert.ok(
    r.logs.some((l) =>
      l.startsWith("impostor PHP not restarted") &&
      l.includes(`${SOCK} is a folder of uid 0, not a socket`)
    ),
    r.logs.join("\n"),
  );

  // the master crashed; its workers still hold the socket a moment: a certain crash, restarted
  const crashed = new FpmHost();
  const master = crashed.up("php8.2-fpm");
  crashed.procs = crashed.procs.filter((p) => p.pid !== master);
  const c = await run(
    debianFs({
      executables: ["/usr/bin/ss"],
      files: { "/etc/php/8.2/fpm/php-fpm.conf": conf },
      sockets: { [SOCK]: 501 },
    }),
    crashed,
    master,
  );
  assert.ok(!c.logs.some((l) => /impostor/.test(l)), c.logs.join("\n"));
  assert.ok(c.run.includes("/usr/sbin/service php8.2-fpm start"), c.run.join("\n"));
});

Deno.test("cron run: the master's exit wakes the run at once; the crash is restarted then, and no watcher outlives the run", async () => {
  const clock = new FakeClock();
  const host = new FpmHost();
  const runner = fpmHost(true, host);
  const first = host.master("php8.2-fpm")!.pid;
  const scripted = scriptedHttp(clock, [ok, ok, ok, { status: 502 }, ok]);
  const at: number[] = [];
  let exit = () => {};
  const httpGet = Object.assign((url: URL, signal: AbortSignal) => {
    at.push(clock.now());
    if (at.length === 3) {
      // SIGKILL of the pool during the 3rd probe: its watcher sees the master go
      host.procs = host.procs.filter((p) => p.pgid !== first);
      exit();
    }
    return scripted(url, signal);
  }, { calls: scripted.calls });
  const watched: number[] = [];
  let stopped = 0;
  const deps = testDeps({
    clock,
    httpGet,
    runner,
    watchExit: (pid: number) => {
      watched.push(pid);
      return { exited: new Promise<void>((resolve) => exit = resolve), stop: () => stopped++ };
    },
  });
  const { mode, raw } = parseCommandLine([URI, "5", "ops@example.com"]);
  const cfg = await loadConfig(mode as "minute", raw, deps);
  const logs = captureLogs();
  const options = { ...fastRelaunch(), lock: memoryLocks() };
  assert.equal(await watchRun(cfg, deps, options), 0);
  const gaps = at.slice(1).map((t, i) => t - at[i]!);
  assert.ok(gaps.slice(0, 2).every((g) => g >= 5000), `on the grid before: gaps ${gaps}`);
  assert.ok(gaps[2]! < 1000, `the 4th probe at once after the exit, not 5 s on: gaps ${gaps}`);
  assert.deepEqual(logs.lines(), ["502 PHP restarted."]);
  assert.ok(!clock.sleeps.includes(1000), `a certain crash, no confirmation: ${clock.sleeps}`);
  const second = host.master("php8.2-fpm")!.pid;
  assert.deepEqual(watched, [first, second], "the master found, then the one started");
  assert.equal(stopped, watched.length, "every watch ended: none outlives the run");
  assert.ok(clock.now() - at[0]! <= 60_000);
});
