/**
 * The status page in the watch loop, with fakes: a hang confirmed in about a second and fixed by
 * killing only the stuck workers, an overloaded pool left alone, early warnings rate-limited, and
 * the thresholds kept when the status page has never answered.
 */
import assert from "node:assert/strict";
import type { FcgiTarget, HttpGet } from "../../src/shared/deps.ts";
import {
  captureLogs,
  debianFs,
  FakeClock,
  fakeMailer,
  type FcgiStep,
  fetchErrors,
  scriptedFcgi,
  testDeps,
  untagged,
} from "../support/fakes.ts";
import { statusJson, statusOf } from "../support/pool.ts";
import { cronRun } from "../support/cron_run.ts";
import { FpmHost, masterTitle } from "../support/fpm_host.ts";

const CONFIG = `
[defaults]
interval = 1
timeout = 5
warn_slow_requests = 2
mail_to = ["ops@example.com"]

[[target]]
name = "www"
url = "fcgi+unix:///run/php/php8.2-fpm.sock/ping"
status_url = "fcgi://127.0.0.1:9001/status"
service = "php8.2-fpm"
`;

const PONG: FcgiStep = { status: 200, body: "pong", ms: 3 };
const TIMEOUT: FcgiStep = {
  error: new DOMException("no answer", "TimeoutError"),
  ms: 5000,
};

/**
 * A pool whose master is 100 (20 MB) and workers 200 (50 MB) and 201 (10 MB); `kill` of the
 * workers heals the ping.
 */
function poolHost(
  clock: FakeClock,
  onKill: () => void,
  onAct: () => void,
  ss?: () => string,
  setup?: (host: FpmHost) => void,
) {
  const host = new FpmHost(undefined, clock);
  host.add({ pid: 100, name: "php-fpm8.2", title: masterTitle(FPM_CONF), rssKb: 20480 });
  host.addWorker(100, "www", { pid: 200, rssKb: 51200 });
  host.addWorker(100, "www", { pid: 201, rssKb: 10240 });
  setup?.(host);
  return host.runner((call) => {
    if (call.cmd === "/usr/bin/ss" && ss) return { stdout: ss() };
    if (/\/(kill|service)$/.test(call.cmd)) onAct();
    if (call.cmd.endsWith("/kill")) onKill();
    return undefined;
  });
}

const FPM_CONF = "/etc/php/8.2/fpm/php-fpm.conf";

/**
 * Runs the cron form for `runFor` seconds; `ping(call)` and `status(call)` answer by call number
 * of each path.
 */
async function run(opts: {
  ping: (n: number, healed: boolean) => FcgiStep;
  status: (n: number, healed: boolean) => FcgiStep;
  runFor?: number;
  config?: string;
  http?: HttpGet;
  /** php-fpm's configuration files, and what `ss -xlH` prints (ss is installed when given). */
  files?: Record<string, string>;
  ss?: () => string;
  /** Changes to the host's processes before the run. */
  host?: (host: FpmHost) => void;
}) {
  captureLogs();
  const clock = new FakeClock();
  let healed = false;
  const counts = { ping: 0, status: 0 };
  const fcgi = scriptedFcgi(clock, (target: FcgiTarget) => {
    const kind = target.path === "/ping" ? "ping" : "status";
    return opts[kind](counts[kind]++, healed);
  });
  let actedAtPing: number | null = null;
  const runner = poolHost(
    clock,
    () => healed = true,
    () => actedAtPing ??= counts.ping,
    opts.ss,
    opts.host,
  );
  const mailer = fakeMailer();
  const deps = testDeps({
    clock,
    ...(opts.http ? { httpGet: opts.http } : {}),
    fcgiGet: fcgi,
    runner,
    mailer,
    fs: debianFs({
      files: {
        "/etc/php-relaunch/config.toml": opts.config ?? CONFIG,
        "/run/php/php8.2-fpm.pid": "100\n",
        ...opts.files,
      },
      executables: opts.ss ? ["/usr/bin/ss"] : [],
    }),
  });
  const { code, cfg, incidents, memory: saved } = await cronRun(deps, opts.runFor ?? 30);
  return { code, counts, runner, mailer, incidents, clock, actedAtPing, cfg, memory: () => saved };
}

const idle = statusJson(statusOf({ busy: 0, idleWorkers: 2 }));
const stuck = statusJson(statusOf({ busy: 2, seconds: 30 }));

Deno.test("a hang confirmed by the status page: restart after ONE timeout, only the stuck workers killed", async () => {
  const r = await run({
    ping: (n, healed) => (n < 3 || healed ? PONG : TIMEOUT),
    status: (n, healed) => ({ status: 200, body: n < 3 || healed ? idle : stuck, ms: 2 }),
  });
  assert.equal(r.code, 0);
  assert.equal(r.actedAtPing, 4, "the first timeout (ping 4) was enough");
  assert.deepEqual(
    r.runner.lines().filter((l) => /\/(kill|service) /.test(l)),
    ["/usr/bin/kill -KILL 200 201"],
    "no reload, no restart: the smallest remedy worked",
  );
  const subjects = untagged(r.mailer.sent);
  assert.deepEqual(subjects, ["web1 PHP restart"]);
  const text = r.mailer.sent[0]!.text;
  assert.match(text, /^[^\n]* timeout PHP restarted\./);
  assert.match(text, /Pool judged hung: all 2 workers busy and none took a new request/);
  assert.match(text, /worker 200 Running for 30\.0 s: GET \/slow\.php \(\/var\/www\/slow\.php\)/);
  assert.match(text, /kill_stuck: SIGKILL to stuck workers 200, 201/);
  const [incident] = r.incidents.records;
  assert.equal(r.incidents.records.length, 1);
  assert.equal(incident?.pool, "hung");
  assert.equal(incident?.poolName, "www", "the pool's name, from its status page");
  assert.equal(incident?.label, "timeout");
  assert.equal(incident?.restart?.rung, "kill_stuck");
  assert.equal(incident?.evidence.status?.workers[0]?.script, "/var/www/slow.php");
  assert.equal(incident?.evidence.processes.length, 3);
});

Deno.test("busy is not hung: timeouts while requests still complete give one alert, no restart", async () => {
  let served = 10;
  const r = await run({
    ping: (n) => (n < 2 ? PONG : TIMEOUT),
    status: (n) => {
      // every worker busy, but each read finds more requests taken: overloaded, not dead
      const s = statusOf({ busy: 2, seconds: 3 });
      served += 5;
      for (const w of s.workers) w.requests = served;
      return { status: 200, body: n < 2 ? idle : statusJson(s), ms: 2 };
    },
  });
  assert.equal(r.code, 3, "still failing at the end of the run");
  assert.deepEqual(r.runner.lines().filter((l) => /\/(kill|service) /.test(l)), []);
  assert.deepEqual(untagged(r.mailer.sent), ["web1 PHP pool overloaded"]);
  assert.match(
    r.mailer.sent[0]!.text,
    /PHP overloaded, not restarted: all 2 workers busy, yet 10 new requests/,
  );
  assert.match(r.mailer.sent[0]!.text, /on_overload = "restart"/);
  assert.equal(r.incidents.records.length, 0);
});

Deno.test("idle workers that are stopped take no request: the pool is hung, not busy", async () => {
  // www-data stopped its own workers (kill -STOP): the status page still shows them idle
  const stoppedIdle = statusJson(statusOf({ busy: 0, idleWorkers: 2 }));
  const stop = (host: FpmHost) => {
    for (const pid of [300, 301]) host.addWorker(100, "www", { pid, stat: "T" });
  };
  const r = await run({
    ping: (n, healed) => (n < 2 || healed ? PONG : TIMEOUT),
    status: (n) => ({ status: 200, body: n < 2 ? idle : stoppedIdle, ms: 2 }),
    host: stop,
  });
  assert.ok(r.actedAtPing !== null, "restarted");
  const subjects = untagged(r.mailer.sent);
  assert.ok(!subjects.includes("web1 PHP pool overloaded"), subjects.join(", "));
  assert.match(
    r.mailer.sent[0]!.text,
    /Pool judged hung: the 2 workers the status page shows idle are stopped \(state T\)/,
  );
  // running ones are idle indeed: busy, as before
  const running = await run({
    ping: (n) => (n < 2 ? PONG : TIMEOUT),
    status: (n) => ({ status: 200, body: n < 2 ? idle : stoppedIdle, ms: 2 }),
    host: (host) => {
      for (const pid of [300, 301]) host.addWorker(100, "www", { pid });
    },
  });
  assert.equal(running.actedAtPing, null);
  assert.deepEqual(untagged(running.mailer.sent), ["web1 PHP pool overloaded"]);
});

Deno.test("a master gone is a crash, whatever a status page its leftover workers answer says", async () => {
  let host: FpmHost | null = null;
  const r = await run({
    ping: (n, healed) => {
      // the master dies (kill -9) after two healthy probes; its workers are stopped by their user
      if (n === 2 && host !== null) {
        host.procs = host.procs.filter((p) => p.pid !== 100);
        for (const p of host.procs) p.stat = "T";
      }
      return n < 2 || healed ? PONG : TIMEOUT;
    },
    // the status page is of the leftover workers' own status listener: "2 idle"
    status: () => ({ status: 200, body: idle, ms: 2 }),
    host: (h) => host = h,
  });
  assert.ok(r.actedAtPing !== null, r.mailer.sent.map((m) => m.text).join("\n----\n"));
  const subjects = untagged(r.mailer.sent);
  assert.ok(!subjects.includes("web1 PHP pool overloaded"), subjects.join(", "));
  assert.match(r.mailer.sent[0]!.text, /Certain crash: master 100 is gone/);
});

Deno.test("early warning: slow requests jump while the heartbeat is healthy; once per warn_every", async () => {
  const r = await run({
    ping: () => PONG,
    status: (n) => ({
      status: 200,
      body: statusJson(statusOf({ busy: 1, idleWorkers: 1, seconds: 8, slowRequests: n * 3 })),
      ms: 2,
    }),
  });
  assert.equal(r.code, 0);
  assert.deepEqual(r.mailer.sent.map((m) => m.subject), ["web1 PHP pool warning"]);
  const text = r.mailer.sent[0]!.text;
  assert.match(text, /PHP pool warning: 3 new slow requests \(now 3\)\./);
  assert.match(text, /worker 200 Running for 8\.0 s/);
  assert.match(text, /Nothing was restarted/);
  assert.ok(r.counts.status > 10, "read with every healthy probe");
});

Deno.test("a unix-socket pool's listen queue comes from the kernel, where php-fpm says 0", async () => {
  let queued = 0;
  const r = await run({
    ping: () => PONG,
    status: (n) => {
      // requests start to queue behind busy workers from the 4th read on
      queued = n >= 3 ? 9 : 0;
      return {
        status: 200,
        body: statusJson(statusOf({ busy: 2, idleWorkers: 0, seconds: 3 })),
        ms: 2,
      };
    },
    files: {
      "/etc/php/8.2/fpm/php-fpm.conf":
        "[global]\npid = /run/php/php8.2-fpm.pid\n[www]\nlisten = /run/php/php8.2-fpm.sock\n",
    },
    ss: () => `u_str LISTEN ${queued}      4096   /run/php/php8.2-fpm.sock 360184 * 0\n`,
  });
  assert.ok(
    r.runner.lines().includes("/usr/bin/ss -xlH src /run/php/php8.2-fpm.sock"),
    r.runner.lines().join("\n"),
  );
  const warnings = r.mailer.sent.filter((m) => /pool warning/.test(m.subject));
  assert.equal(warnings.length, 1, r.mailer.sent.map((m) => m.subject).join(", "));
  assert.match(warnings[0]!.text, /listen queue 9 \(limit 5, max seen 9, backlog 4096\)/);
});

Deno.test("memory: a worker above warn_worker_memory is an early warning; the pool's memory is kept", async () => {
  const r = await run({
    ping: () => PONG,
    status: () => ({
      status: 200,
      body: statusJson(statusOf({ busy: 1, idleWorkers: 1, seconds: 1 })),
      ms: 2,
    }),
    config: CONFIG.replace("warn_slow_requests = 2", "warn_worker_memory = 40"),
  });
  // ps: the master (20 MB) and workers of 50 and 10 MB, read once per 15 s, not once a probe
  const reads = r.runner.lines().filter((l) => l.includes("-C php-fpm8.2"));
  assert.ok(reads.length >= 2 && reads.length <= 3, reads.join("\n"));
  const warnings = r.mailer.sent.filter((m) => /pool warning/.test(m.subject));
  assert.equal(warnings.length, 1, "once per warn_every");
  assert.match(
    warnings[0]!.text,
    /PHP pool warning: a worker holds 50 MB resident \(limit 40 MB\)\./,
  );
  assert.deepEqual(r.memory()?.counters.poolMemory, {
    sumKb: 20480 + 51200 + 10240,
    largestKb: 51200,
  });
});

Deno.test("a status page that never answered proves nothing: the timeout threshold still applies", async () => {
  const r = await run({
    ping: (n, healed) => (n < 2 || healed ? PONG : TIMEOUT),
    status: () => ({ status: 404, body: "File not found.", ms: 2 }),
    config: CONFIG.replace("warn_slow_requests = 2", 'rungs = ["reload"]'),
  });
  assert.ok(r.runner.lines().some((l) => l.includes("-USR2")), "restarted");
  // two timeouts (pings 3 and 4) before acting, as without a status page
  assert.equal(r.actedAtPing, 4);
  const [incident] = r.incidents.records;
  assert.equal(incident?.pool, null);
  assert.match(incident?.evidence.statusError ?? "", /answered 404/);
});

Deno.test("nginx refused: the status page tells 'nginx down' from 'both down'; nothing restarted", async () => {
  const config = CONFIG.replace(
    'url = "fcgi+unix:///run/php/php8.2-fpm.sock/ping"',
    'url = "http://127.0.0.1:8889/php-heartbeat.php"',
  );
  const refused: HttpGet = () => Promise.reject(fetchErrors.refused());
  const up = await run({
    ping: () => PONG,
    status: () => ({ status: 200, body: idle }),
    config,
    http: refused,
  });
  assert.equal(up.code, 7);
  assert.match(
    up.mailer.sent[0]!.text,
    /restarting php-fpm cannot help\. php-fpm itself answers its status page \(pool www \(static\): 0 active, 2 idle of 2;.*\): the fault is nginx's\./,
  );
  const down = await run({
    ping: () => PONG,
    status: () => ({ error: new Deno.errors.ConnectionRefused("refused") }),
    config,
    http: refused,
  });
  assert.match(
    down.mailer.sent[0]!.text,
    /php-fpm does not answer its status page either \(the status page failed: refused\)/,
  );
  assert.deepEqual(down.runner.lines().filter((l) => /\/(kill|service) /.test(l)), []);
});
