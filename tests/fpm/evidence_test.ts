import assert from "node:assert/strict";
import { captureEvidence, evidenceLines, parseCpuTime } from "../../src/fpm/evidence.ts";
import { REAL_STATUS, statusOf } from "../support/pool.ts";
import {
  DEBIAN_TOOLS,
  FakeClock,
  fakeFs,
  FakeRunner,
  scriptedFcgi,
  testDeps,
} from "../support/fakes.ts";

const tools = DEBIAN_TOOLS;

/** ps -o pid=,ppid=,pgid=,stat=,time=,rss=,etimes= for a master (100), two workers and another pool's. */
const PS = [
  "  100     1   100 Ss   00:00:01 20480  3600 php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)",
  "  101   100   100 R    00:01:05 51200   120 php-fpm: pool www",
  "  102   100   100 D    1-02:03:04 49152   120 php-fpm: pool www",
  "  900     1   900 Ss   00:00:00 20000  3600 php-fpm: master process (/etc/other.conf)",
].join("\n");

const files = {
  "/etc/php/8.2/fpm/php-fpm.conf": "[global]\nerror_log = /var/log/php8.2-fpm.log\n[www]\n" +
    "pm = static\npm.max_children = 2\nslowlog = /var/log/www.slow.log\nlisten = /run/php/php8.2-fpm.sock\n",
  "/var/log/www.slow.log": "[25-Nov-2026 10:00:00]  [pool www] pid 101\n" +
    "script_filename = /var/www/slow.php\n[0x1] sleep() /var/www/slow.php:3\n",
  "/var/log/php8.2-fpm.log": "WARNING: [pool www] child 101 exited on signal 11 (SIGSEGV)\n",
};

Deno.test("ps's CPU time formats become seconds", () => {
  assert.equal(parseCpuTime("00:00:07"), 7);
  assert.equal(parseCpuTime("01:02:03"), 3723);
  assert.equal(parseCpuTime("1-00:00:01"), 86_401);
  assert.equal(parseCpuTime("02:03"), 123);
});

Deno.test("evidence: status, this pool's processes from ps, settings and log tails", async () => {
  const clock = new FakeClock();
  const runner = new FakeRunner(() => ({ stdout: PS }));
  const deps = testDeps({
    clock,
    runner,
    fs: fakeFs({ files }),
    fcgiGet: scriptedFcgi(clock, [{ status: 200, body: REAL_STATUS }]),
  });
  const e = await captureEvidence(
    {
      status: {
        address: { transport: "tcp", hostname: "127.0.0.1", port: 9001 },
        path: "/status",
        query: "",
      },
      processName: "php-fpm8.2",
      masterPid: 100,
      fpmConfig: "/etc/php/8.2/fpm/php-fpm.conf",
      listen: null,
      tools,
    },
    deps,
    2000,
  );
  assert.deepEqual(runner.lines(), [
    "/usr/bin/ps -o pid=,ppid=,pgid=,stat=,time=,rss=,etimes=,args= -C php-fpm8.2",
  ]);
  assert.equal(e.status?.pool, "x");
  assert.deepEqual(e.processes.map((p) => [p.pid, p.state, p.cpuSeconds, p.rssKb]), [
    [100, "S", 1, 20480],
    [101, "R", 65, 51200],
    [102, "D", 93_784, 49152],
  ], "the other master's process group is left out");
  assert.deepEqual(
    e.processes.map((p) => p.pool),
    [undefined, "www", "www"],
    "each worker's pool from its title; the master serves none",
  );
  assert.equal(e.settings?.maxChildren, 2);
  assert.equal(e.configFile, "/etc/php/8.2/fpm/php-fpm.conf");
  assert.deepEqual(e.slowlog.length, 3);
  assert.match(e.errorLog[0]!, /SIGSEGV/);
  assert.deepEqual(e.memory, deps.host.memory());
});

Deno.test("evidence without a status page or config says so, and a known status is reused", async () => {
  const clock = new FakeClock();
  const fcgi = scriptedFcgi(clock, [{ error: new Error("must not be asked") }]);
  const deps = testDeps({ clock, runner: new FakeRunner(() => ({ code: 1 })), fcgiGet: fcgi });
  const source = {
    status: null,
    processName: "php-fpm8.2",
    masterPid: null,
    fpmConfig: null,
    listen: null,
    tools,
  };
  const bare = await captureEvidence(source, deps, 2000);
  assert.equal(bare.status, null);
  assert.match(bare.statusError ?? "", /set status_url/);
  assert.deepEqual(bare.processes, []);
  const known = statusOf({ busy: 2 });
  const reused = await captureEvidence(source, deps, 2000, known);
  assert.equal(reused.status, known);
  assert.equal(fcgi.calls.length, 0);
});

Deno.test("the evidence in the alert: pool line, the longest-busy workers, processes, settings, logs", () => {
  const lines = evidenceLines({
    at: 0,
    status: statusOf({ busy: 2, idleWorkers: 1, seconds: 42 }),
    statusError: null,
    processes: [
      { pid: 1, ppid: 1, pgid: 1, state: "S", cpuSeconds: 1, rssKb: 10240, ageSeconds: 9 },
      { pid: 2, ppid: 1, pgid: 1, state: "D", cpuSeconds: 1, rssKb: 10240, ageSeconds: 9 },
    ],
    configFile: "/etc/php/8.2/fpm/php-fpm.conf",
    settings: {
      pool: "www",
      pm: "static",
      maxChildren: 3,
      requestTerminateTimeout: null,
      requestSlowlogTimeout: "5s",
      listen: "/run/php/php8.2-fpm.sock",
      statusPath: null,
      statusListen: null,
      pingPath: null,
      slowlog: null,
    },
    errorLogFile: null,
    slowlog: ["script_filename = /var/www/slow.php"],
    errorLog: [],
    memory: { total: 4 * 2 ** 30, available: 2 ** 30 },
  }).join("\n");
  assert.match(lines, /Pool: pool www \(static\): 2 active, 1 idle of 3/);
  assert.match(lines, /worker 200 Running for 42\.0 s: GET \/slow\.php \(\/var\/www\/slow\.php\)/);
  assert.doesNotMatch(lines, /worker 300/, "idle workers are not listed");
  assert.match(lines, /Processes: 2 \(1 S, 1 D\), 20 MB resident in all/);
  assert.match(lines, /pm\.max_children 3, request_terminate_timeout 0 \(off\)/);
  assert.match(lines, /Memory: 1024 MB available of 4096 MB/);
  assert.match(lines, /Slowlog, last lines:\n {2}script_filename = \/var\/www\/slow\.php/);
});
