/**
 * Drain before acting, with fakes: what HAProxy's agent is told while a target is paused,
 * saturated, restarted and recovering, and that a restart of a failure the process table has not
 * made certain waits `drain_wait` after the drain began before its first rung, while a certain
 * crash is acted on at once.
 */
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli.ts";
import { describeBalancer } from "../../src/config/balancer_settings.ts";
import { loadConfig } from "../../src/config/load.ts";
import type { ProbeResult } from "../../src/probe/result.ts";
import type { Counters } from "../../src/record/metrics.ts";
import { Balancer, drainWaitFor, saturated, TargetDrain } from "../../src/run/drain.ts";
import { memoryPauses } from "../../src/run/pause_file.ts";
import { memoryStateStore } from "../../src/run/state.ts";
import type { FleetLink, RestartAsk } from "../../src/run/fleet.ts";
import { silentLoop } from "../../src/run/liveness.ts";
import { loadWatch, type TargetWatch } from "../../src/run/target.ts";
import type { HttpGet } from "../../src/shared/deps.ts";
import { FpmHost } from "../support/fpm_host.ts";
import {
  actions,
  captureLogs,
  debianFs,
  FakeClock,
  fakeHost,
  fakeMailer,
  memoryLocks,
  testDeps,
} from "../support/fakes.ts";

const e502: ProbeResult = { kind: "status", status: 502, detail: "", ms: 3 };
const crash: ProbeResult = { ...e502, certain: { kind: "crash", why: "master 1000 is gone" } };
const LADDER = ["kill_stuck", "reload", "restart", "kill"] as const;
const UP = { healthy: true, paused: false, saturated: false };
const DOWN = { healthy: false, paused: false, saturated: false };

type PoolFigures = NonNullable<Counters["pool"]>;
const figures = (over: Partial<PoolFigures> = {}): PoolFigures => ({
  name: "www",
  active: 2,
  idle: 3,
  total: 5,
  listenQueue: 0,
  maxChildrenReached: 0,
  slowRequests: 0,
  acceptedConn: 10,
  ...over,
});

Deno.test("drain: healthy is up; saturated drains, and up comes back after success_threshold healthy probes", () => {
  const d = new TargetDrain("www", new FakeClock(), 2, 2000);
  assert.equal(d.state, "up");
  d.observe(UP);
  assert.equal(d.state, "up");
  // one failed probe alone is not a reason to drain: the policy decides what it means
  d.observe(DOWN);
  assert.equal(d.state, "up");
  d.observe({ ...UP, saturated: true });
  assert.equal(d.reason, "saturated");
  d.observe(UP);
  assert.equal(d.reason, "recovering", "one healthy probe of two");
  d.observe(DOWN);
  d.observe(UP);
  assert.equal(d.state, "drain", "a failure in between starts the count again");
  d.observe(UP);
  assert.equal(d.state, "up");
});

Deno.test("drain: a pause drains while it lasts, then success_threshold healthy probes", () => {
  const d = new TargetDrain("www", new FakeClock(), 1, 2000);
  d.observe({ ...UP, paused: true });
  d.observe({ ...UP, paused: true });
  assert.equal(d.reason, "paused");
  d.observe(UP);
  assert.equal(d.state, "up", "success_threshold 1: the first healthy probe after it");
});

Deno.test("drain: a saturated pool is one whose listen queue is not empty or whose max children reached grew", () => {
  const before = figures();
  assert.equal(saturated(before, figures()), false);
  assert.equal(saturated(before, figures({ listenQueue: 3 })), true);
  assert.equal(saturated(before, figures({ maxChildrenReached: 1 })), true);
  assert.equal(saturated(null, figures({ maxChildrenReached: 4 })), false, "no earlier read");
  assert.equal(saturated(before, before), false, "not read this step: unknown");
  assert.equal(saturated(before, null), false);
  assert.equal(
    saturated(figures({ name: "a" }), figures({ name: "b", maxChildrenReached: 9 })),
    false,
  );
});

Deno.test("drain: a gentle rung on an uncertain failure waits drain_wait; a certain crash or a kill alone does not", () => {
  assert.equal(drainWaitFor(e502, LADDER, 2000), 2000);
  assert.equal(drainWaitFor(e502, ["reload"], 2000), 2000);
  assert.equal(drainWaitFor(e502, ["kill"], 2000), 0, "nothing left in flight to save");
  assert.equal(drainWaitFor(crash, ["kill"], 2000), 0);
  assert.equal(drainWaitFor(crash, ["reload", "restart"], 2000), 0, "certain: at once");
  assert.equal(drainWaitFor(e502, LADDER, 0), 0);
});

Deno.test("drain: settle waits what is left of drain_wait since the drain began; drain until healthy after", async () => {
  const clock = new FakeClock();
  const d = new TargetDrain("www", clock, 1, 2000);
  d.beginRestart(e502, LADDER);
  assert.equal(d.reason, "restarting");
  clock.advance(500);
  await d.settle();
  assert.deepEqual(clock.sleeps, [1500]);
  await d.settle();
  assert.deepEqual(clock.sleeps, [1500], "once");
  d.endRestart();
  assert.equal(d.reason, "recovering");
  d.observe(UP);
  assert.equal(d.state, "up");

  d.beginRestart(crash, ["kill"]);
  assert.equal(d.reason, "crash");
  await d.settle();
  assert.deepEqual(clock.sleeps, [1500], "a certain crash waits for nothing");
  d.endRestart();
  d.observe(DOWN);
  assert.equal(d.state, "drain", "until the pool answers");
  d.observe(UP);
  assert.equal(d.state, "up");
});

Deno.test("balancer: speaks for the chosen target, or drains when any target drains", async () => {
  const clock = new FakeClock();
  const target = (name: string) => ({ name, policy: { successThreshold: 1 } }) as never;
  const settings = (t: string | null) => ({
    listen: { hostname: "127.0.0.1", port: 0 },
    public: false,
    target: t,
    drainWaitMs: 2000,
  });
  const all = new Balancer(settings(null), clock);
  const one = new Balancer(settings("a"), clock);
  try {
    for (const b of [all, one]) {
      b.forTarget(target("a"));
      b.forTarget(target("b")).observe({ ...UP, paused: true });
    }
    assert.equal(all.state(), "drain");
    assert.equal(one.state(), "up", "b's pause is not a's");
    all.keepOnly(["a"]);
    assert.equal(all.state(), "up", "a target a reload removed says nothing");
    assert.equal(one.forTarget(target("a")), one.forTarget(target("a")), "kept across reloads");
  } finally {
    await all.stop();
    await one.stop();
  }
});

Deno.test("balancer: an agent port another user holds does not stop the watch; answered once it is free", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  const b = new Balancer(
    { listen: { hostname: "127.0.0.1", port }, public: false, target: null, drainWaitMs: 2000 },
    new FakeClock(),
  );
  try {
    held.close();
    // the listener tries again every 10 s
    let line = "";
    for (let i = 0; i < 60 && line === ""; i++) {
      await new Promise((r) => setTimeout(r, 250));
      line = await Deno.connect({ hostname: "127.0.0.1", port }).then(async (conn) => {
        const buffer = new Uint8Array(32);
        const n = await conn.read(buffer).catch(() => null);
        conn.close();
        return n === null ? "" : new TextDecoder().decode(buffer.subarray(0, n));
      }, () => "");
    }
    assert.equal(line, "up ready\n");
  } finally {
    await b.stop();
  }
});

Deno.test("balancer: check-config says when the agent's port is one another local user may bind", () => {
  const at = (port: number) =>
    describeBalancer({
      listen: { hostname: "127.0.0.1", port },
      public: false,
      target: null,
      drainWaitMs: 2000,
    });
  assert.match(at(9777), /port 1024 or above: another local user who binds it first/);
  assert.doesNotMatch(at(977), /1024/);
});

const CONFIG = `
[defaults]
interval = 1
timeout = 1
grace_period = 0
success_threshold = 2

[balancer]
agent_listen = "127.0.0.1:9777"
drain_wait = 7

[[target]]
name = "main"
url = "http://127.0.0.1:8889/hb.php"
service = "php8.2-fpm"
`;

/**
 * One target's watch stepped by hand on a fake php8.2-fpm (master 1000), with the drain watch
 * mode gives it. `status(n)` answers the n-th probe; at the first command that acts (kill,
 * service), what the agent said and how long after the drain began are noted.
 */
async function stepped(
  status: (n: number, host: FpmHost) => number,
  steps: number,
  fleetOf?: (watch: TargetWatch, drain: TargetDrain, clock: FakeClock) => unknown,
  stop?: AbortSignal,
) {
  const clock = new FakeClock();
  const host = new FpmHost(undefined, clock);
  host.up("php8.2-fpm");
  let began: number | null = null;
  const noted: { state: string; reason: string | null; afterMs: number }[] = [];
  let drain: TargetDrain | null = null;
  const runner = host.runner((call) => {
    if (noted.length === 0 && /\/(kill|service)$/.test(call.cmd)) {
      noted.push({ state: drain!.state, reason: drain!.reason, afterMs: clock.now() - began! });
    }
    return undefined;
  });
  let n = 0;
  const httpGet: HttpGet = () => {
    clock.advance(2);
    return Promise.resolve({ status: status(++n, host), location: null, body: "" });
  };
  const deps = testDeps({
    clock,
    httpGet,
    runner,
    mailer: fakeMailer(),
    host: fakeHost(0),
    fs: debianFs({
      dirs: { "/etc/init.d": ["php8.2-fpm"] },
      files: { "/etc/php-relaunch/config.toml": CONFIG },
    }),
  });
  const { mode, raw } = parseCommandLine(["watch"]);
  const cfg = await loadConfig(mode as "watch", raw, deps);
  assert.equal(cfg.balancer?.drainWaitMs, 7000);
  const target = cfg.targets[0]!;
  const options = { store: memoryStateStore(), pauses: memoryPauses(), lock: memoryLocks() };
  const { watch } = await loadWatch(cfg, target, deps, options);
  drain = new TargetDrain(target.name, clock, target.policy.successThreshold, 7000);
  if (fleetOf) watch.ctx.options.fleet = fleetOf(watch, drain, clock) as FleetLink;
  const begin = drain.beginRestart.bind(drain);
  drain.beginRestart = (first, rungs) => {
    // the first begin: the fleet's slot wait, then the restart, begin it again
    began ??= clock.now();
    begin(first, rungs);
  };
  watch.ctx.drain = drain;
  const said: string[] = [];
  for (let i = 0; i < steps; i++) {
    await watch.step(target.policy, stop);
    said.push(drain.reason ?? "up");
    clock.advance(1000);
  }
  return { said, acted: noted[0] ?? null, runner, host, clock };
}

Deno.test("drain: an uncertain failure drains, waits drain_wait, then the gentle rung; up after success_threshold", async () => {
  const logs = captureLogs();
  let healed = false;
  const r = await stepped((n, host) => {
    if (host.signals.includes("USR2 1000")) healed = true;
    return n >= 3 && !healed ? 502 : 200;
  }, 10);
  assert.equal(actions(r.runner)[0], "/usr/bin/kill -USR2 1000", actions(r.runner).join("\n"));
  assert.ok(r.acted !== null);
  assert.equal(r.acted.state, "drain");
  assert.equal(r.acted.reason, "restarting");
  assert.ok(r.acted.afterMs >= 7000, `the reload came ${r.acted.afterMs} ms after the drain`);
  assert.ok(r.acted.afterMs < 7500, `and not much later: ${r.acted.afterMs} ms`);
  // up, failing, failing (the restart), then two healthy probes owed
  const restartStep = r.said.indexOf("recovering");
  assert.ok(restartStep > 0, r.said.join(" "));
  assert.deepEqual(r.said.slice(0, restartStep), Array(restartStep).fill("up"));
  assert.deepEqual(r.said.slice(restartStep, restartStep + 3), ["recovering", "recovering", "up"]);
  assert.ok(logs.lines().includes("HAProxy agent: drain (restarting)."), logs.lines().join("\n"));
  assert.ok(logs.lines().some((l) => /^Draining at the balancer: acting in \d/.test(l)));
});

Deno.test("drain: a certain crash is acted on at once, and drains until the pool answers", async () => {
  const logs = captureLogs();
  const r = await stepped((n, host) => {
    // the pool crashes after its 3rd probe: every process gone, down until started again
    if (n === 3) host.procs = host.procs.filter((p) => p.name !== "php-fpm8.2");
    return n >= 3 && host.starts === 0 ? 502 : 200;
  }, 10);
  assert.ok(r.acted !== null, actions(r.runner).join("\n"));
  assert.equal(r.acted.state, "drain");
  assert.equal(r.acted.reason, "crash");
  assert.ok(r.acted.afterMs < 7000, `acted ${r.acted.afterMs} ms after the drain: no wait`);
  assert.ok(!r.clock.sleeps.some((ms) => ms > 5000), r.clock.sleeps.join(", "));
  assert.ok(actions(r.runner).some((l) => l === "/usr/sbin/service php8.2-fpm start"));
  const restartStep = r.said.indexOf("recovering");
  assert.ok(restartStep > 0, r.said.join(" "));
  assert.equal(r.said.at(-1), "up", r.said.join(" "));
  assert.ok(logs.lines().includes("HAProxy agent: drain (crash)."), logs.lines().join("\n"));
});

Deno.test("drain: the fleet's slot wait drains and counts as restarting; the drain counts from its start", async () => {
  captureLogs();
  const stop = new AbortController();
  let healed = false;
  const seen: { reason: string | null; restarting: boolean; hung: boolean; ask: RestartAsk }[] = [];
  const r = await stepped(
    (n, host) => {
      if (host.signals.includes("USR2 1000")) healed = true;
      return n >= 3 && !healed ? 502 : 200;
    },
    8,
    (watch, drain, clock) => ({
      observe: () => Promise.resolve(),
      restart: async (
        _t: string,
        _teller: unknown,
        work: () => Promise<unknown>,
        ask: RestartAsk,
      ) => {
        // the slot wait: 30 s, the loop silent meanwhile
        const beat = { at: clock.now(), watch };
        clock.advance(30_000);
        const hung =
          silentLoop([watch.ctx.target], new Map([["main", beat]]), clock.now(), () => 10_000) !==
            null;
        seen.push({ reason: drain.reason, restarting: watch.responder.restarting, hung, ask });
        return await work();
      },
    }),
    stop.signal,
  );
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.reason, "restarting", "the agent says drain during the slot wait");
  assert.equal(seen[0]!.restarting, true);
  assert.equal(seen[0]!.hung, false, "the liveness checks let the wait be");
  assert.equal(seen[0]!.ask.certain, false);
  assert.equal(seen[0]!.ask.signal, stop.signal, "a stop reaches the slot wait");
  // drain_wait (7 s) had passed during the 30 s wait: the reload runs at once after the slot
  assert.ok(r.acted !== null);
  assert.ok(r.acted.afterMs >= 30_000 && r.acted.afterMs < 31_000, `${r.acted.afterMs} ms`);
  assert.equal(r.said.at(-1), "up", r.said.join(" "));
});

Deno.test("drain: a certain crash asks the fleet as certain (never held by a shared cause)", async () => {
  captureLogs();
  const asks: RestartAsk[] = [];
  const r = await stepped(
    (n, host) => {
      if (n === 3) host.procs = host.procs.filter((p) => p.name !== "php-fpm8.2");
      return n >= 3 && host.starts === 0 ? 502 : 200;
    },
    6,
    () => ({
      observe: () => Promise.resolve(),
      restart: (_t: string, _teller: unknown, work: () => Promise<unknown>, ask: RestartAsk) => {
        asks.push(ask);
        return work();
      },
    }),
  );
  assert.ok(asks.length >= 1, actions(r.runner).join("\n"));
  assert.equal(asks[0]!.certain, true);
});
