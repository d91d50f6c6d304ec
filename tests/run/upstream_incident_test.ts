/**
 * Upstream incidents in the watch loop, with fakes: a pool whose stuck workers all wait on one
 * peer gets one alert naming it, at most one kill round and no restart while it lasts; it is
 * resolved when the heartbeat answers, or handed back to the ordinary policy when the workers
 * move on and php-fpm still fails. A pool exhausted for another reason is restarted as before.
 */
import assert from "node:assert/strict";
import type { FcgiTarget } from "../../src/shared/deps.ts";
import type { PoolStatus } from "../../src/fpm/status_page.ts";
import { renderMetrics } from "../../src/record/metrics.ts";
import {
  captureLogs,
  debianFs,
  FakeClock,
  fakeMailer,
  type FcgiStep,
  scriptedFcgi,
  testDeps,
  untagged,
} from "../support/fakes.ts";
import { statusJson } from "../support/pool.ts";
import { cronRun } from "../support/cron_run.ts";
import { type FakeProc, FpmHost, masterTitle } from "../support/fpm_host.ts";

const FPM_CONF = "/etc/php/8.2/fpm/php-fpm.conf";
const DB = "127.0.0.1:3306";

const config = (extra = "") => `
[defaults]
interval = 1
timeout = 5
mail_to = ["ops@example.com"]

[[target]]
name = "www"
url = "fcgi+unix:///run/php/php8.2-fpm.sock/ping"
status_url = "fcgi://127.0.0.1:9001/status"
service = "php8.2-fpm"
${extra}
`;

const PONG: FcgiStep = { status: 200, body: "pong", ms: 3 };
const TIMEOUT: FcgiStep = { error: new DOMException("no answer", "TimeoutError"), ms: 5000 };

/** How the fake pool's busy workers look to ss and ps. */
interface Waiting {
  /** The TCP peer worker `pid` (of `generation` 1, or 2 for a killed one's successor) holds. */
  peer: (pid: number, generation: number) => string | null;
  /** ps's `wchan stat` of each worker. */
  wait?: (pid: number) => string;
}

/**
 * A cron run of `runFor` seconds on master 100 with 4 busy workers (200-203, on their request for
 * 30 s). The master replaces each killed worker at once; `healAt(n, restarted)` says whether
 * ping n answers.
 */
async function run(opts: {
  waiting: Waiting;
  healAt?: (ping: number, restarted: boolean) => boolean;
  extra?: string;
  runFor?: number;
  masterStat?: string;
  /** Pids the status page names that are www-data's own processes, not the master's workers. */
  strangers?: number[];
}) {
  captureLogs();
  const clock = new FakeClock();
  const host = new FpmHost(undefined, clock);
  host.add({
    pid: 100,
    name: "php-fpm8.2",
    title: masterTitle(FPM_CONF),
    stat: opts.masterStat ?? "Ss",
  });
  const generation = new Map<number, number>();
  const strangers = new Set(opts.strangers ?? []);
  for (const pid of [200, 201, 202, 203]) {
    if (strangers.has(pid)) {
      host.add({
        pid,
        name: "php-fpm8.2",
        title: "php-fpm: pool www",
        ruid: 33,
        euid: 33,
        stat: "S",
      });
    } else host.addWorker(100, "www", { pid, startedAt: clock.now() - 100_000 });
    generation.set(pid, 1);
  }
  let restarted = false;
  let pings = 0;
  const workers = () =>
    host.procs.filter((p) => (p.ppid === 100 || strangers.has(p.pid)) && p.stat[0] !== "Z");
  const requestSince = new Map<number, number>([[200, 30], [201, 30], [202, 30], [203, 30]].map((
    [pid, s],
  ) => [pid!, clock.now() - s! * 1000]));
  const status = (): PoolStatus => {
    const ws = workers();
    return {
      pool: "www",
      pm: "static",
      acceptedConn: 100,
      listenQueue: 3,
      maxListenQueue: 3,
      listenQueueLen: 511,
      idle: 0,
      active: ws.length,
      total: ws.length,
      maxChildrenReached: 1,
      slowRequests: 0,
      workers: ws.map((p: FakeProc) => ({
        pid: p.pid,
        state: "Running",
        requests: 10,
        durationMs: clock.now() - (requestSince.get(p.pid) ?? clock.now()),
        method: "GET",
        uri: "/db.php",
        script: "/var/www/db.php",
        cpu: 0,
        memory: 0,
        startedAt: p.startedAt,
      })),
    };
  };
  const fcgi = scriptedFcgi(clock, (target: FcgiTarget) => {
    if (target.path === "/ping") {
      return (opts.healAt ?? (() => false))(++pings, restarted) ? PONG : TIMEOUT;
    }
    return { status: 200, body: statusJson(status()), ms: 2 };
  });
  const runner = host.runner((call) => {
    const bin = call.cmd.split("/").pop();
    if (bin === "ss" && call.args[0] === "-tnpH") {
      return {
        stdout: workers().flatMap((p, i) => {
          const peer = opts.waiting.peer(p.pid, generation.get(p.pid) ?? 2);
          return peer === null
            ? []
            : [`ESTAB 0 0 127.0.0.1:${40000 + i} ${peer} users:(("php-fpm8.2",pid=${p.pid},fd=5))`];
        }).join("\n"),
      };
    }
    if (bin === "ss") return { stdout: "" };
    if (bin === "ps" && call.args[0] === "-o") {
      return {
        stdout: call.args[3]!.split(",").map((pid) =>
          `${pid} ${(opts.waiting.wait ?? (() => "wait_woken S"))(Number(pid))}`
        ).join("\n"),
      };
    }
    if (bin === "kill" && call.args[0] === "-KILL") {
      // php-fpm forks a successor for each worker killed, which takes a queued request at once
      for (const pid of call.args.slice(1).map(Number)) {
        const next = pid + 100;
        host.addWorker(100, "www", { pid: next, startedAt: clock.now() });
        generation.set(next, 2);
        requestSince.set(next, clock.now());
      }
    }
    if (bin === "service" || (bin === "kill" && call.args[0] !== "-KILL")) restarted = true;
    return undefined;
  });
  const mailer = fakeMailer();
  const deps = testDeps({
    clock,
    fcgiGet: fcgi,
    runner,
    mailer,
    fs: debianFs({
      files: {
        "/etc/php-relaunch/config.toml": config(opts.extra),
        "/run/php/php8.2-fpm.pid": "100\n",
      },
      executables: ["/usr/bin/ss"],
    }),
  });
  const r = await cronRun(deps, opts.runFor ?? 60);
  const acts = runner.lines().filter((l) => /\/(kill|service) /.test(l));
  return { ...r, mailer, acts, host, runner };
}

const allOnDb: Waiting = { peer: () => DB };

Deno.test("upstream: every stuck worker on one database: one alert naming it, one kill round, no restart", async () => {
  const r = await run({ waiting: allOnDb });
  assert.deepEqual(
    r.acts,
    ["/usr/bin/kill -KILL 200 201 202 203"],
    "one round of the stuck workers, then nothing: no reload, no restart, no kill rung",
  );
  assert.deepEqual(untagged(r.mailer.sent), ["web1 PHP upstream blocked"]);
  const text = r.mailer.sent[0]!.text;
  assert.match(
    text,
    /timeout PHP upstream: 4 of 4 workers blocked on 127\.0\.0\.1:3306 for \d+ s; php-fpm restarts cannot help; kill round 1 of 1: SIGKILL to stuck workers 200, 201, 202, 203/,
  );
  assert.match(text, /Upstream: 4 of 4 workers blocked on 127\.0\.0\.1:3306, the longest for/);
  assert.equal(r.memory.state.incident?.kind, "upstream");
  assert.equal(r.memory.state.incident?.peer, DB);
  assert.equal(r.memory.state.incident?.kills, 1);
  assert.equal(r.memory.state.restarts.length, 0, "no restart in the history");
  assert.equal(r.memory.counters.restarts.ok + r.memory.counters.restarts.failed, 0);
  assert.equal(r.code, 3, "still failing at the end of the run");
  const [record] = r.incidents.records;
  assert.equal(r.incidents.records.length, 1, "one record: the incident's kill round");
  assert.equal(record?.evidence.upstream?.peer, DB);
  assert.equal(record?.restart?.rung, "kill_stuck");
  assert.equal(record?.incident, r.memory.state.incident?.id);
  // the successors are blocked on it too: the metric says so, by peer
  assert.deepEqual(r.memory.counters.upstream, { pool: "www", waits: [{ peer: DB, waits: 4 }] });
  const metrics = await renderMetrics([{ name: "www", counters: r.memory.counters }]);
  assert.match(
    metrics,
    /^php_relaunch_pool_upstream_waits\{target="www",pool="www",peer="127\.0\.0\.1:3306"\} 4$/m,
  );
});

Deno.test("upstream: resolved when the heartbeat answers again; the metric is cleared", async () => {
  const r = await run({ waiting: allOnDb, healAt: (n) => n > 5 });
  assert.deepEqual(r.acts, ["/usr/bin/kill -KILL 200 201 202 203"]);
  assert.deepEqual(untagged(r.mailer.sent), ["web1 PHP upstream blocked", "web1 PHP recovered"]);
  assert.match(r.mailer.sent[1]!.text, /Workers were blocked on 127\.0\.0\.1:3306; kill rounds: 1/);
  const tag = (i: number) => /#([\d-]+)\]$/.exec(r.mailer.sent[i]!.subject)?.[1];
  assert.equal(tag(0), tag(1), "one incident, one thread");
  assert.equal(r.memory.state.incident, null);
  assert.equal(r.memory.counters.upstream, undefined);
  assert.equal(r.code, 0);
});

Deno.test("upstream_kill_rounds = 0, or a ladder without kill_stuck: nothing is killed at all", async () => {
  for (const extra of ["upstream_kill_rounds = 0", 'rungs = ["reload", "restart"]']) {
    const r = await run({ waiting: allOnDb, extra });
    assert.deepEqual(r.acts, [], extra);
    assert.deepEqual(untagged(r.mailer.sent), ["web1 PHP upstream blocked"], extra);
    assert.match(r.mailer.sent[0]!.text, /nothing killed/, extra);
  }
  const twice = await run({ waiting: allOnDb, extra: "upstream_kill_rounds = 2" });
  assert.equal(twice.acts.length, 2, twice.acts.join("; "));
  assert.ok(twice.acts.every((a) => /kill -KILL/.test(a)), "two rounds, still no restart");
  assert.equal(twice.mailer.sent.length, 1, "still one alert");
});

Deno.test("upstream over while php-fpm still fails: the ordinary policy restarts it, once, not in a loop", async () => {
  // the successors of the killed workers are in user code: not the database any more
  const r = await run({
    waiting: { peer: (_pid, generation) => (generation === 1 ? DB : null) },
    healAt: (_n, restarted) => restarted,
  });
  assert.equal(r.acts[0], "/usr/bin/kill -KILL 200 201 202 203", "the incident's kill round");
  assert.ok(
    r.acts.slice(1).some((a) => /-USR2|service/.test(a)),
    `then a restart: ${r.acts.join("; ")}`,
  );
  const subjects = untagged(r.mailer.sent);
  assert.deepEqual(subjects.slice(0, 2), ["web1 PHP upstream blocked", "web1 PHP upstream over"]);
  assert.ok(subjects.includes("web1 PHP restart"), subjects.join(", "));
  assert.equal(r.memory.state.restarts.length, 1, "one restart, and healthy after it");
  assert.equal(r.code, 0);
});

Deno.test("not an upstream: each worker on a different peer, in user code, or asleep is restarted as before", async () => {
  const cases: [string, Waiting][] = [
    ["each on a different peer", { peer: (pid) => `10.0.0.${pid % 10}:5432` }],
    ["in user code", { peer: () => DB, wait: () => "- R" }],
    ["in sleep()", { peer: () => DB, wait: () => "hrtimer_nanosleep S" }],
    ["half of them", { peer: (pid) => (pid % 2 === 0 ? DB : null) }],
  ];
  for (const [what, waiting] of cases) {
    const r = await run({ waiting, healAt: (_n, restarted) => restarted });
    assert.equal(r.acts[0], "/usr/bin/kill -KILL 200 201 202 203", what);
    assert.ok(r.acts.length > 1, `${what}: the ladder goes on (${r.acts.join("; ")})`);
    const subjects = untagged(r.mailer.sent);
    assert.ok(!subjects.some((s) => /upstream/.test(s)), `${what}: ${subjects.join(", ")}`);
    assert.equal(r.memory.state.incident, null, what);
  }
});

Deno.test("a stopped master is php-fpm's own hang, whatever its workers wait on", async () => {
  const r = await run({ waiting: allOnDb, masterStat: "Ts", healAt: (_n, restarted) => restarted });
  const subjects = untagged(r.mailer.sent);
  assert.ok(!subjects.some((s) => /upstream/.test(s)), subjects.join(", "));
  assert.ok(subjects.includes("web1 PHP restart"), subjects.join(", "));
});

Deno.test("a worker the status page names that is not this master's own is not looked at", async () => {
  // a status page on www-data's socket names three of www-data's own processes, all on the
  // database, beside the one real worker, in user code: only that one counts, so no upstream
  const r = await run({
    waiting: { peer: () => DB, wait: (pid) => (pid === 200 ? "- R" : "wait_woken S") },
    strangers: [201, 202, 203],
    healAt: (_n, restarted) => restarted,
  });
  assert.ok(r.runner.lines().some((l) => / -o pid=,wchan:64=,stat= -q 200$/.test(l)));
  const subjects = untagged(r.mailer.sent);
  assert.ok(!subjects.some((s) => /upstream/.test(s)), subjects.join(", "));
  assert.ok(subjects.includes("web1 PHP restart"), subjects.join(", "));
});
