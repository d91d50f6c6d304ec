import assert from "node:assert/strict";
import { captureEvidence, evidenceLines } from "../../src/fpm/evidence.ts";
import { realDeps } from "../../src/real.ts";
import { asUser } from "../support/hostile.ts";
import { parseCpuTime } from "../../src/act/processes.ts";
import { FpmHost, masterTitle, STARTED_AT } from "../support/fpm_host.ts";
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

/** A master (100), two workers and another pool's master (900), as ps sees them. */
function psHost(): FpmHost {
  const host = new FpmHost();
  const startedAt = STARTED_AT + 100_000 - 3_600_000;
  host.add({
    pid: 100,
    name: "php-fpm8.2",
    title: masterTitle("/etc/php/8.2/fpm/php-fpm.conf"),
    rssKb: 20480,
    startedAt,
  });
  host.addWorker(100, "www", { pid: 101, stat: "R", rssKb: 51200, startedAt });
  host.addWorker(100, "www", { pid: 102, stat: "D", rssKb: 49152, startedAt });
  host.add({ pid: 900, name: "php-fpm8.2", title: masterTitle("/etc/other.conf"), rssKb: 20000 });
  return host;
}

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
  const host = psHost();
  const runner = host.runner((call) => {
    // ps's CPU times as ps writes them for long-running workers
    const r = host.answer(call);
    if (call.args[0] !== "-C" || r === undefined) return r;
    return {
      ...r,
      stdout: r.stdout!.split("\n").map((l) =>
        /^\s+101 /.test(l)
          ? l.replace("00:00:01", "00:01:05")
          : /^\s+102 /.test(l)
          ? l.replace("00:00:01", "1-02:03:04")
          : l
      ).join("\n"),
    };
  });
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
    "/usr/bin/ps -C php-fpm8.2 -o pid=,ppid=,pgid=,ruid=,euid=,stat=,time=,rss=,etimes=",
    "/usr/bin/ps -q 100,900 -o pid=,args:255=,pid=",
    "/usr/bin/ps -q 101,102 -o pid=,args:255=,pid=",
  ], "the masters' titles, then the workers' in a read of their own");
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

Deno.test("evidence: a site's own log folder is not read from; in root's, a link, a hard link or another user's file is not either", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-logs-" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.writeTextFile(`${dir}/shadow`, "root:$6$secret-hash:19000::::::\n", { mode: 0o600 });
    // a site's own log folder: its user can swap what the path leads to at any moment
    await Deno.mkdir(`${dir}/site`);
    await Deno.chown(`${dir}/site`, 65534, 65534);
    assert.equal(await asUser(["ln", "-s", `${dir}/shadow`, `${dir}/site/slow.log`]), 0);
    assert.equal(await asUser(["sh", "-c", `echo forged >${dir}/site/error.log`]), 0);
    const conf = (logs: string) =>
      `[global]\nerror_log = ${logs}/error.log\n[www]\nuser = www-data\n` +
      `slowlog = ${logs}/slow.log\nlisten = /run/php/php8.2-fpm.sock\n`;
    await Deno.writeTextFile(`${dir}/php-fpm.conf`, conf(`${dir}/site`));
    const deps = testDeps({ fs: realDeps().fs, runner: new FakeRunner(() => ({ code: 1 })) });
    const source = {
      status: null,
      processName: "php-fpm8.2",
      masterPid: null,
      fpmConfig: `${dir}/php-fpm.conf`,
      listen: "/run/php/php8.2-fpm.sock",
      tools,
    };
    const e = await captureEvidence(source, deps, 2000);
    const theirs =
      `(not read: the folder "${dir}/site" is one another user can change (uid 65534, mode 0755))`;
    assert.deepEqual([e.slowlog, e.errorLog], [[theirs], [theirs]]);
    assert.ok(!JSON.stringify(e).includes("secret-hash"));
    // a log folder of root's: a link, another user's file, a hard link are not read
    await Deno.mkdir(`${dir}/logs`);
    await Deno.writeTextFile(`${dir}/php-fpm.conf`, conf(`${dir}/logs`));
    await Deno.symlink(`${dir}/shadow`, `${dir}/logs/slow.log`);
    await Deno.writeTextFile(`${dir}/logs/error.log`, "forged\n");
    await Deno.chown(`${dir}/logs/error.log`, 65534, 65534);
    const rootFolder = await captureEvidence(source, deps, 2000);
    assert.deepEqual(rootFolder.slowlog, ["(not read: it is a symbolic link)"]);
    assert.deepEqual(rootFolder.errorLog, [
      "(not read: it is owned by uid 65534, not uid 0 or uid 33)",
    ]);
    await Deno.remove(`${dir}/logs/slow.log`);
    await Deno.link(`${dir}/shadow`, `${dir}/logs/slow.log`);
    const again = await captureEvidence(source, deps, 2000);
    assert.deepEqual(again.slowlog, ["(not read: it has other names (hard links))"]);
    assert.ok(!JSON.stringify([rootFolder, again]).includes("secret-hash"));
    // root's own log, or the pool user's, is read
    await Deno.remove(`${dir}/logs/slow.log`);
    await Deno.writeTextFile(`${dir}/logs/slow.log`, "script_filename = /var/www/slow.php\n");
    await Deno.chown(`${dir}/logs/slow.log`, 33, 33);
    const read = await captureEvidence(source, deps, 2000);
    assert.deepEqual(read.slowlog, ["script_filename = /var/www/slow.php"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("evidence: a status page that names another pool than its address is that pool's is not taken", async () => {
  const clock = new FakeClock();
  const forged = statusOf({ pool: "shop", busy: 2 });
  const deps = testDeps({
    clock,
    runner: new FakeRunner(() => ({ code: 1 })),
    fs: fakeFs({
      files: {
        "/etc/php/8.2/fpm/php-fpm.conf": "[www]\npm.status_path = /status\n" +
          "pm.status_listen = /run/php/www-status.sock\n[shop]\npm.status_listen = 127.0.0.1:9002\n",
      },
    }),
  });
  const e = await captureEvidence(
    {
      status: {
        address: { transport: "unix", path: "/run/php/www-status.sock" },
        path: "/status",
        query: "",
      },
      processName: "php-fpm8.2",
      masterPid: null,
      fpmConfig: "/etc/php/8.2/fpm/php-fpm.conf",
      listen: null,
      tools,
    },
    deps,
    2000,
    forged,
  );
  assert.equal(e.status, null, "its workers are nobody's to kill");
  assert.match(e.statusError ?? "", /names pool "shop", but its address is pool www's/);
});
