/**
 * Several pools of one service, with fakes: the pure pool policy, the configuration's
 * [[target.pool]], and the cron form's decisions: a pool that fails while another answers has
 * only its own stuck workers killed; the service is restarted only when every pool fails or the
 * master is gone.
 */
import assert from "node:assert/strict";
import { memoryPauses } from "../../src/run/pause_file.ts";
import { parseCommandLine } from "../../src/cli.ts";
import { loadConfig } from "../../src/config/load.ts";
import { parseConfigFile } from "../../src/config/file.ts";
import { policyOf } from "../../src/config/policy_settings.ts";
import { WATCH_DEFAULTS } from "../../src/config/file.ts";
import type { FcgiTarget } from "../../src/shared/deps.ts";
import { renderMetrics } from "../../src/record/metrics.ts";
import { freshMemory, type Memory } from "../../src/run/state.ts";
import { afterKill, decidePool, type PoolState } from "../../src/run/pool_policy.ts";
import type { ProbeResult } from "../../src/probe/result.ts";
import { FpmHost, masterTitle } from "../support/fpm_host.ts";
import {
  actions,
  captureLogs,
  debianFs,
  FakeClock,
  fakeMailer,
  type FcgiStep,
  scriptedFcgi,
  testDeps,
  untagged,
  untaggedOrPlain,
} from "../support/fakes.ts";
import { statusJson, statusOf } from "../support/pool.ts";
import { cronRun } from "../support/cron_run.ts";
import { ConfigError } from "../../src/shared/errors.ts";

const policy = policyOf(WATCH_DEFAULTS);
const ok: ProbeResult = { kind: "status", status: 200, detail: "", ms: 3, via: "fcgi" };
const timeout: ProbeResult = { kind: "timeout", detail: "no answer", ms: 5000, via: "fcgi" };
const bad502: ProbeResult = { kind: "status", status: 502, detail: "", ms: 3, via: "fcgi" };

Deno.test("pool policy: confirmed like the service, then its stuck workers killed", () => {
  const first = decidePool(undefined, bad502, 1000, policy);
  assert.equal(first.action, null);
  assert.equal(first.confirm, true, "a 5xx is confirmed quickly");
  assert.equal(first.state?.failures, 1);
  const second = decidePool(first.state!, bad502, 2000, policy);
  assert.equal(second.action, "kill_stuck");
  assert.deepEqual(second.state?.kills, [2000]);
  assert.equal(second.state?.graceUntil, 2000 + policy.gracePeriodMs);
  // the successors get the grace period: a failure within it does not count
  const inGrace = decidePool(second.state!, bad502, 3000, policy);
  assert.equal(inGrace.action, null);
  assert.equal(inGrace.state?.failures, 0);
  // a timeout is not confirmed quickly: it already cost a full timeout
  assert.equal(decidePool(undefined, timeout, 0, policy).confirm, false);
});

Deno.test("pool policy: at most max_restarts kills in the window, then one hold, then its recovery", () => {
  let state: PoolState | undefined;
  let now = 0;
  const actions: (string | null)[] = [];
  for (let i = 0; i < 12; i++) {
    now += 20_000;
    const d = decidePool(state, timeout, now, policy);
    actions.push(d.action);
    state = d.action === "kill_stuck" ? afterKill(d.state!, false) : d.state!;
  }
  assert.deepEqual(actions.filter((a) => a === "kill_stuck").length, policy.maxRestarts);
  assert.deepEqual(actions.filter((a) => a === "hold").length, 1, "held once, not every probe");
  const back = decidePool(state, ok, now + 1000, policy);
  assert.equal(back.action, "recovered");
  assert.equal(back.state?.failingSince, null);
  assert.equal(back.state?.kills.length, policy.maxRestarts, "the window's kills are kept");
  // out of the window the kills are forgotten, and a pool that answers leaves no state
  assert.equal(decidePool(back.state!, ok, now + policy.restartWindowMs + 1, policy).state, null);
});

Deno.test("pool policy: a kill that worked ends the run of failures without a second alert", () => {
  const killed = decidePool(
    decidePool(undefined, timeout, 0, policy).state!,
    timeout,
    6000,
    policy,
  );
  assert.equal(killed.action, "kill_stuck");
  const healed = afterKill(killed.state!, true);
  assert.equal(decidePool(healed, ok, 20_000, policy).action, null);
  const notHealed = afterKill(killed.state!, false);
  assert.equal(decidePool(notHealed, ok, 20_000, policy).action, "recovered");
});

Deno.test("pool policy: a pool probe that answers 404 is not php-fpm failing", () => {
  const notFound: ProbeResult = { kind: "status", status: 404, detail: "", ms: 3, via: "fcgi" };
  assert.deepEqual(decidePool(undefined, notFound, 0, policy), {
    state: null,
    action: null,
    confirm: false,
  });
});

const TWO_POOLS = `
[defaults]
interval = 1
timeout = 5
mail_to = ["ops@example.com"]

[[target]]
name = "web"
url = "fcgi+unix:///run/php/www.sock/ping"
pool_name = "www"
status_url = "fcgi://127.0.0.1:9001/status"
service = "php8.2-fpm"

[[target.pool]]
name = "b"
url = "fcgi+unix:///run/php/b.sock/ping"
status_url = "fcgi://127.0.0.1:9002/status"
`;

Deno.test("config: [[target.pool]] parsed; names unique; a pool's bad URL named", async () => {
  const file = parseConfigFile("c.toml", TWO_POOLS);
  assert.ok(!Array.isArray(file), String(file));
  assert.equal(file.target[0]?.pool_name, "www");
  assert.deepEqual(file.target[0]?.pool?.map((p) => p.name), ["b"]);
  assert.deepEqual(parseConfigFile("c.toml", TWO_POOLS.replace('name = "b"', 'name = "www"')), [
    'c.toml: target "web": the pool name "www" is used twice',
  ]);
  assert.deepEqual(
    parseConfigFile("c.toml", TWO_POOLS.replace('name = "b"', 'name = "b c"')),
    [
      `c.toml: target[0].pool[0].name: "b c" is not allowed: expected the pool's name, as in php-fpm's [section] (letters, digits, . _ - +)`,
    ],
  );
  assert.deepEqual(
    parseConfigFile("c.toml", TWO_POOLS.replace('url = "fcgi+unix:///run/php/b', 'nme = "x')),
    [
      `c.toml: target[0].pool[0].url: missing: expected the pool's ping: fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH (or an http:// heartbeat served by it)`,
      'c.toml: target[0].pool[0]: unknown key "nme"',
    ],
  );
  const deps = testDeps({
    fs: debianFs({
      files: {
        "/etc/php-relaunch/config.toml": TWO_POOLS.replace(
          "fcgi+unix:///run/php/b.sock/ping",
          "http://127.0.0.1:6000/ping",
        ),
      },
    }),
  });
  const { mode, raw } = parseCommandLine([
    "check-config",
    "--config",
    "/etc/php-relaunch/config.toml",
  ]);
  await assert.rejects(
    () => loadConfig(mode as "check", raw, deps),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.issues.some((i) => /target "web": pool "b": .*6000/.test(i)),
  );
  // a pool's own stuck_after, else the target's (here its timeout)
  const three = TWO_POOLS + `
[[target.pool]]
name = "c"
url = "fcgi+unix:///run/php/c.sock/ping"
stuck_after = "30s"
`;
  const loaded = await loadConfig(
    mode as "check",
    raw,
    testDeps({ fs: debianFs({ files: { "/etc/php-relaunch/config.toml": three } }) }),
  );
  const t = loaded.targets[0]!;
  assert.equal(t.poolName, "www");
  assert.deepEqual(t.pools.map((p) => [p.name, p.stuckAfterMs]), [["b", 5000], ["c", 30_000]]);
  assert.equal(t.stuckAfterMs, 5000);
});

const FPM_CONF = "/etc/php/8.2/fpm/php-fpm.conf";
const PONG: FcgiStep = { status: 200, body: "pong", ms: 3 };
const TIMEOUT: FcgiStep = { error: new DOMException("no answer", "TimeoutError"), ms: 5000 };

/** A status page of pool `name` with its workers `pids` on one request for 30 s. */
function stuckStatus(name: string, pids: number[]): string {
  const s = statusOf({ pool: name, busy: pids.length, seconds: 30 });
  s.workers.forEach((w, i) => w.pid = pids[i]!);
  return statusJson(s);
}

/** Which pool a FastCGI request goes to, by its socket or port. */
function poolOf(t: FcgiTarget): "www" | "b" {
  const a = t.address;
  return (a.transport === "unix" ? a.path.includes("/b.sock") : a.port === 9002) ? "b" : "www";
}

/**
 * Runs the cron form on two pools (www: the target's own, b), master 100, www's workers 200-201
 * and b's 210-211. `fails(pool, healed)` says whether a pool's ping times out; a kill of a pool's
 * workers heals it; `masterGone` makes the process table lack the master.
 */
async function run(opts: {
  /** `n`: how many pings www has had. */
  fails: (pool: "www" | "b", healed: Set<string>, n: number) => boolean;
  config?: string;
  masterGone?: boolean;
  runFor?: number;
  /** The memory the run starts from, and a pause of the target until this long after its start. */
  memory?: Memory;
  pausedForMs?: number;
  /** A failing pool's status page shows an idle worker: overloaded, not hung. */
  busy?: boolean;
}) {
  const logs = captureLogs();
  const clock = new FakeClock();
  const healed = new Set<string>();
  let wwwPings = 0;
  const failedPings = { www: 0, b: 0 };
  const fcgi = scriptedFcgi(clock, (t: FcgiTarget) => {
    const pool = poolOf(t);
    if (pool === "www" && t.path === "/ping") wwwPings++;
    const failing = opts.fails(pool, healed, wwwPings);
    if (failing && t.path === "/ping") failedPings[pool]++;
    if (t.path === "/ping") return failing ? TIMEOUT : PONG;
    const pids = pool === "b" ? [210, 211] : [200, 201];
    return {
      status: 200,
      body: failing && opts.busy
        ? statusJson(statusOf({ pool, busy: 1, idleWorkers: 1, seconds: 30 }))
        : failing
        ? stuckStatus(pool, pids)
        : statusJson(statusOf({ pool, busy: 0, idleWorkers: 2 })),
      ms: 2,
    };
  });
  // the master (20 MB), www's workers (50 and 10 MB) and b's (200 and 10 MB), named by titles
  const host = new FpmHost(undefined, clock);
  if (!opts.masterGone) {
    host.add({ pid: 100, name: "php-fpm8.2", title: masterTitle(FPM_CONF), rssKb: 20480 });
  }
  const workers = [[200, "www", 51200], [201, "www", 10240], [210, "b", 204800], [211, "b", 10240]];
  for (const [pid, pool, rssKb] of workers as [number, string, number][]) {
    host.addWorker(100, pool, { pid, rssKb, ...(opts.masterGone ? { ppid: 1 } : {}) });
  }
  const runner = host.runner((call) => {
    if (call.cmd.endsWith("/kill")) {
      for (const pid of call.args.slice(1)) healed.add(Number(pid) >= 210 ? "b" : "www");
    }
    if (/\/(service|systemctl)$/.test(call.cmd)) {
      healed.add("b");
      healed.add("www");
    }
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
        "/etc/php-relaunch/config.toml": opts.config ?? TWO_POOLS,
        "/run/php/php8.2-fpm.pid": "100\n",
      },
    }),
  });
  const pauses = memoryPauses();
  if (opts.pausedForMs) {
    const at = clock.now();
    pauses.items.set("web", { at, until: at + opts.pausedForMs, by: "alice", reason: "deploy" });
  }
  // the master as seen before the run: gone now, when `masterGone`
  const seen = opts.memory ?? (opts.masterGone ? freshMemory() : undefined);
  if (opts.masterGone && seen !== undefined) seen.state.masterPid = 100;
  const { code, incidents, memory } = await cronRun(deps, opts.runFor ?? 60, {
    memory: seen,
    pauses,
  });
  const acts = actions(runner);
  return { code, acts, mailer, incidents, logs, memory, failedPings };
}

Deno.test("one pool exhausted while the other answers: only its stuck workers killed, no restart", async () => {
  const r = await run({ fails: (pool, healed) => pool === "b" && !healed.has("b") });
  assert.equal(r.code, 0);
  assert.deepEqual(r.acts, ["/usr/bin/kill -KILL 210 211"], "b's workers, nothing else");
  assert.deepEqual(untaggedOrPlain(r.mailer.sent), ["web1 PHP pool workers killed"]);
  const text = r.mailer.sent[0]!.text;
  assert.match(
    text,
    /timeout PHP pool b freed: SIGKILL to stuck workers 210, 211; php8\.2-fpm was not restarted: pool www serves\./,
  );
  assert.match(text, /Heartbeat: fcgi\+unix:\/\/\/run\/php\/b\.sock\/ping/);
  assert.match(text, /Pool judged hung/);
  assert.equal(r.incidents.records.length, 1);
  const incident = r.incidents.records[0]!;
  assert.equal(incident.poolName, "b");
  assert.equal(incident.restart?.rung, "kill_stuck");
  assert.equal(incident.evidence.status?.pool, "b", "the evidence is the failing pool's");
  assert.equal(r.memory.state.restarts.length, 0, "the service's policy saw no failure");
  assert.equal(r.memory.counters.restarts.ok, 0);
  assert.deepEqual(Object.keys(r.memory.pools), ["b"], "b's kill is remembered for its window");
  assert.equal(r.memory.pools["b"]?.failingSince, null);
  assert.deepEqual(r.memory.counters.pools, {
    www: { up: true, killsOk: 0, killsFailed: 0 },
    b: { up: true, killsOk: 1, killsFailed: 0 },
  });
  const text2 = await renderMetrics([{ name: "web", counters: r.memory.counters }]);
  assert.match(text2, /^php_relaunch_pool_up\{target="web",pool="b"\} 1$/m);
  assert.match(text2, /^php_relaunch_pool_kills_total\{target="web",pool="b",result="ok"\} 1$/m);
});

Deno.test("the target's own pool exhausted while another answers: the same, for its workers", async () => {
  const r = await run({ fails: (pool, healed) => pool === "www" && !healed.has("www") });
  assert.equal(r.code, 0);
  assert.deepEqual(r.acts, ["/usr/bin/kill -KILL 200 201"]);
  assert.deepEqual(untaggedOrPlain(r.mailer.sent), ["web1 PHP pool workers killed"]);
  assert.match(r.mailer.sent[0]!.text, /PHP pool www freed: .* pool b serves/);
  assert.equal(r.incidents.records[0]?.poolName, "www");
});

Deno.test("every pool failing: the service is restarted, as with one pool", async () => {
  const r = await run({ fails: (_pool, healed) => healed.size === 0 });
  assert.equal(r.code, 0);
  assert.ok(
    r.acts.some((l) => / -KILL 200 201$/.test(l)),
    `the service's own ladder: ${r.acts.join("; ")}`,
  );
  assert.ok(!r.acts.some((l) => / -KILL 210 211$/.test(l)), "no pool-level kill");
  assert.deepEqual(untagged(r.mailer.sent), ["web1 PHP restart"]);
  assert.equal(r.memory.state.restarts.length, 1);
  assert.deepEqual(r.memory.pools, {});
});

Deno.test("a pool answering but the master gone: the service is restarted", async () => {
  const r = await run({
    masterGone: true,
    fails: (pool, healed) => pool === "b" && !healed.has("b") && !healed.has("www"),
  });
  assert.ok(
    r.acts.some((l) => l === "/usr/bin/kill -KILL 200 201 210 211"),
    `${r.acts.join("; ")}\n${r.logs.lines().join("\n")}`,
  );
  assert.ok(!r.acts.includes("/usr/bin/kill -KILL 210 211"), "not a pool-level kill");
  assert.equal(r.memory.state.restarts.length, 1, "the service's restart");
});

Deno.test("a failing pool without a status page: told, never the service restarted, then held", async () => {
  const config = TWO_POOLS.replace('status_url = "fcgi://127.0.0.1:9002/status"\n', "");
  const r = await run({ config, fails: (pool) => pool === "b", runFor: 600 });
  assert.deepEqual(r.acts, [], "nothing to kill, and the service serves www");
  const subjects = untaggedOrPlain(r.mailer.sent);
  assert.deepEqual(subjects, [
    "web1 PHP pool failing",
    "web1 PHP pool failing",
    "web1 PHP pool failing",
    "web1 PHP pool given up",
  ]);
  assert.match(r.mailer.sent[0]!.text, /set its status_url to find its stuck workers/);
  assert.match(
    r.mailer.sent[3]!.text,
    /PHP pool b still failing after 3 attempts to kill its stuck workers in 15 min \(max_restarts\); nothing more is done until it answers while pool www serves/,
  );
  assert.equal(r.memory.state.restarts.length, 0);
});

Deno.test("after the service's restart a held pool is judged afresh", async () => {
  const config = TWO_POOLS.replace('status_url = "fcgi://127.0.0.1:9002/status"\n', "");
  const r = await run({
    config,
    runFor: 300,
    // b never answers; www fails too from its 20th ping until its workers are killed
    fails: (pool, healed, n) => pool === "b" || (n >= 20 && !healed.has("www")),
  });
  const subjects = untaggedOrPlain(r.mailer.sent);
  const restart = subjects.indexOf("web1 PHP restart");
  assert.ok(restart > 0, subjects.join(", "));
  assert.deepEqual(subjects.slice(0, restart), [
    "web1 PHP pool failing",
    "web1 PHP pool failing",
    "web1 PHP pool failing",
    "web1 PHP pool given up",
  ]);
  assert.equal(
    subjects[restart + 1],
    "web1 PHP pool failing",
    `held no more: ${subjects.join(", ")}`,
  );
  assert.equal(r.memory.state.restarts.length, 1);
});

Deno.test("a pool's failures before a pause do not count after it", async () => {
  const memory = freshMemory();
  memory.pools = {
    b: {
      failures: 1,
      timeouts: 1,
      failingSince: 1_699_999_990_000,
      label: "timeout",
      kills: [],
      graceUntil: 0,
      heldAt: null,
      told: false,
      overloadedAt: null,
    },
  };
  const r = await run({
    memory,
    pausedForMs: 20_000,
    fails: (pool, healed) => pool === "b" && !healed.has("b"),
  });
  assert.deepEqual(r.acts, ["/usr/bin/kill -KILL 210 211"], "freed after the pause");
  // the same run from nothing remembered: the failure from before the pause made no difference
  const fresh = await run({
    pausedForMs: 20_000,
    fails: (pool, healed) => pool === "b" && !healed.has("b"),
  });
  assert.deepEqual(fresh.acts, r.acts);
  assert.equal(r.failedPings.b, fresh.failedPings.b, "as many failed probes of b before its kill");
});

Deno.test("a pool overloaded but taking requests: told once, its workers not killed", async () => {
  const r = await run({ busy: true, runFor: 300, fails: (pool) => pool === "b" });
  assert.deepEqual(r.acts, []);
  const subjects = untaggedOrPlain(r.mailer.sent);
  assert.deepEqual(subjects, ["web1 PHP pool overloaded"], "once, never held as if killed");
  assert.match(
    r.mailer.sent[0]!.text,
    /PHP pool b overloaded, its workers not killed: 1 idle workers: the pool still takes requests; pool www serves\./,
  );
  assert.equal(r.incidents.records.length, 0);
  assert.equal(r.memory.state.restarts.length, 0);
});

Deno.test("README's [[target.pool]] example is a valid configuration", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const section = readme.slice(readme.indexOf("### Several pools of one service"));
  const toml = /```toml\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
  const file = parseConfigFile("README.md", toml);
  assert.ok(!Array.isArray(file), Array.isArray(file) ? file.join("\n") : "");
  assert.equal(file.target[0]?.pool_name, "shop");
  assert.deepEqual(file.target[0]?.pool?.map((p) => p.name), ["blog"]);
});

Deno.test("memory by pool: each pool's workers from their titles, each held to the limits", async () => {
  const config = TWO_POOLS.replace(
    'mail_to = ["ops@example.com"]',
    'mail_to = ["ops@example.com"]\nwarn_worker_memory = 100',
  );
  const r = await run({ config, runFor: 30, fails: () => false });
  assert.deepEqual(r.memory.counters.poolMemory, {
    sumKb: 20480 + 51200 + 10240 + 204800 + 10240,
    largestKb: 204800,
    byPool: {
      www: { sumKb: 51200 + 10240, largestKb: 51200 },
      b: { sumKb: 204800 + 10240, largestKb: 204800 },
    },
  });
  assert.deepEqual(untaggedOrPlain(r.mailer.sent), ["web1 PHP pool warning"]);
  assert.match(
    r.mailer.sent[0]!.text,
    /PHP pool warning: a worker of pool b holds 200 MB resident \(limit 100 MB\)\./,
  );
  assert.match(r.mailer.sent[0]!.text, /\n {2}pool b: 2 workers, 210 MB, the largest 200 MB\n/);
});
