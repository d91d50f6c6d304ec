/**
 * The policy of an upstream incident, pure: told once, at most upstream_kill_rounds kill rounds
 * and no restart while it lasts, over when the heartbeat answers or the workers move on (then
 * php-fpm's failure is judged as before); a master gone or stopped is never held back.
 */
import assert from "node:assert/strict";
import {
  type Action,
  decide,
  freshState,
  type TargetState,
} from "../../src/run/recovery_policy.ts";
import { parseState } from "../../src/run/state.ts";
import { renderStatus, statusOf } from "../../src/commands/status.ts";
import { freshCounters } from "../../src/record/metrics.ts";
import { parseConfigFile, WATCH_DEFAULTS } from "../../src/config/file.ts";
import { policyOf } from "../../src/config/policy_settings.ts";
import type { ProbeResult } from "../../src/probe/result.ts";
import type { Policy } from "../../src/config/policy_settings.ts";

const S = 1000;
const policy: Policy = {
  failureThreshold: 2,
  timeoutThreshold: 2,
  successThreshold: 1,
  confirmDelayMs: S,
  intervalMs: 5 * S,
  gracePeriodMs: 10 * S,
  maxRestarts: 3,
  restartWindowMs: 900 * S,
  rearmAfterMs: 900 * S,
  reminderMs: 0,
  onOverload: "alert",
  retryAfterMs: [],
  pauseDefaultMs: 1800 * S,
  pauseMaxMs: 7200 * S,
};

const hung: ProbeResult = {
  kind: "timeout",
  detail: "",
  ms: 5000,
  pool: { verdict: "hung", why: "all 4 workers busy and none took a new request" },
};
const onDb = (peer = "127.0.0.1:3306"): ProbeResult => ({
  ...hung,
  upstream: { peer, blocked: 4, of: 4, forMs: 40 * S },
});
const ok: ProbeResult = { kind: "status", status: 200, detail: "", ms: 3 };

/** Steps `results` through decide, 5 s apart; every step's actions. */
function steps(results: ProbeResult[], p: Policy = policy, from: TargetState = freshState()) {
  let state = from;
  let now = 1_800_000_000_000;
  const all: Action[][] = [];
  for (const r of results) {
    const d = decide(state, r, now, p);
    state = d.state;
    all.push(d.actions);
    now += 5 * S;
  }
  return { state, all };
}

const kinds = (actions: Action[]) =>
  actions.map((a) =>
    a.type === "upstream"
      ? `upstream${a.opened ? " opened" : ""}${a.kill ? " kill" : ""}`
      : a.type === "alert"
      ? `alert ${a.reason}`
      : a.type
  );

Deno.test("upstream: opened and told once with one kill round, then held: no restart however long", () => {
  const { state, all } = steps(Array.from({ length: 20 }, () => onDb()));
  assert.deepEqual(kinds(all[0]!), ["upstream opened kill"]);
  assert.ok(all.slice(1).every((a) => kinds(a).join() === "log"), JSON.stringify(all.slice(1)));
  assert.equal(state.incident?.kind, "upstream");
  assert.equal(state.incident?.peer, "127.0.0.1:3306");
  assert.equal(state.incident?.kills, 1);
  assert.equal(state.failures, 0, "no run of failures counts toward a restart meanwhile");
  assert.equal(state.restarts.length, 0);
  assert.equal(state.incident?.since, 1_800_000_000_000 - 40 * S, "since the longest wait began");
});

Deno.test("upstream_kill_rounds: 2 rounds, or none; another peer is another incident", () => {
  const two = steps([onDb(), onDb(), onDb()], { ...policy, upstreamKillRounds: 2 });
  assert.deepEqual(two.all.map(kinds), [["upstream opened kill"], ["upstream kill"], ["log"]]);
  const none = steps([onDb(), onDb()], { ...policy, upstreamKillRounds: 0 });
  assert.deepEqual(none.all.map(kinds), [["upstream opened"], ["log"]]);
  const moved = steps([onDb(), onDb("/run/redis/redis.sock")]);
  assert.deepEqual(moved.all.map(kinds), [["upstream opened kill"], ["upstream opened kill"]]);
  assert.equal(moved.state.incident?.peer, "/run/redis/redis.sock");
});

Deno.test("a kill round only where the policy would act anyway: hung, or busy with on_overload restart", () => {
  const busy: ProbeResult = { ...onDb(), pool: { verdict: "busy", why: "1 idle" } };
  assert.deepEqual(steps([busy, busy]).all.map(kinds), [["upstream opened"], ["log"]]);
  const restart = steps([busy], { ...policy, onOverload: "restart" });
  assert.deepEqual(restart.all.map(kinds), [["upstream opened kill"]]);
  // a 502 has no pool verdict: told, and killed once a timeout shows the pool hung
  const e502: ProbeResult = {
    kind: "status",
    status: 502,
    detail: "",
    ms: 3,
    upstream: onDb().upstream!,
  };
  assert.deepEqual(steps([e502, onDb(), onDb()]).all.map(kinds), [
    ["upstream opened"],
    ["upstream kill"],
    ["log"],
  ]);
  const given = steps([onDb()], policy, { ...freshState(), givenUpAt: 1 });
  assert.deepEqual(given.all.map(kinds), [["upstream opened"]], "given up: nothing killed");
});

Deno.test("upstream: over when the heartbeat answers twice in a row (recovered, the same incident)", () => {
  const { state, all } = steps([onDb(), onDb(), ok, ok]);
  assert.deepEqual(kinds(all[2]!), [], "one lucky probe is not the end");
  assert.deepEqual(kinds(all[3]!), ["alert recovered"]);
  const recovered = all[3]![0] as Extract<Action, { type: "alert" }>;
  assert.equal(recovered.incident.kind, "upstream");
  assert.equal(state.incident, null);
});

Deno.test("upstream: a probe that got through between timeouts neither ends it nor opens another", () => {
  const { state, all } = steps([onDb(), ok, onDb(), ok, onDb()]);
  assert.deepEqual(all.map(kinds), [["upstream opened kill"], [], ["log"], [], ["log"]]);
  assert.equal(state.incident?.kills, 1, "still one kill round");
});

Deno.test("upstream: the workers moved on but php-fpm still fails: told, then restarted as before", () => {
  const { state, all } = steps([onDb(), onDb(), hung]);
  assert.deepEqual(kinds(all[2]!), ["alert upstream_over", "restart"], "hung is certain enough");
  assert.equal(state.incident?.kind, "php_down");
  const plain = steps([onDb(), { kind: "timeout", detail: "", ms: 5000 }]);
  assert.deepEqual(kinds(plain.all[1]!), ["alert upstream_over", "log"], "a timeout is confirmed");
});

Deno.test("a master gone or stopped is php-fpm's own failure, whatever the workers waited on", () => {
  const certain: ProbeResult = { ...onDb(), certain: { kind: "hang", why: "all stopped" } };
  assert.deepEqual(kinds(steps([certain]).all[0]!), ["restart"]);
  assert.deepEqual(kinds(steps([onDb(), certain]).all[1]!), ["alert upstream_over", "restart"]);
});

Deno.test("without an upstream nothing changes: hung restarts, busy alerts overloaded", () => {
  assert.deepEqual(kinds(steps([hung]).all[0]!), ["restart"]);
  const busy: ProbeResult = { ...hung, pool: { verdict: "busy", why: "1 idle" } };
  assert.deepEqual(kinds(steps([busy]).all[0]!), ["alert overloaded"]);
});

Deno.test("an upstream incident survives the state file; one written before has none", () => {
  const { state } = steps([onDb()]);
  const text = JSON.stringify({
    version: 1,
    ...state,
    counters: { ...freshCounters(), upstream: { pool: "www", waits: [{ peer: "a:1", waits: 3 }] } },
  });
  const memory = parseState(text);
  assert.ok(typeof memory !== "string", String(memory));
  assert.equal(memory.state.incident?.kind, "upstream");
  assert.equal(memory.state.incident?.peer, "127.0.0.1:3306");
  assert.equal(memory.state.incident?.kills, 1);
  assert.deepEqual(memory.counters.upstream?.waits, [{ peer: "a:1", waits: 3 }]);
  const before = parseState(
    JSON.stringify({ version: 1, ...freshState(), counters: freshCounters() }),
  );
  assert.ok(typeof before !== "string", String(before));
  assert.equal(before.counters.upstream, undefined);
});

Deno.test("config: upstream_kill_rounds, 1 by default, a whole number from 0 to 100", () => {
  const file = (v: string) =>
    parseConfigFile(
      "c.toml",
      `[defaults]\nupstream_kill_rounds = ${v}\n[[target]]\nname = "a"\nurl = "http://127.0.0.1:8889/"\n`,
    );
  const zero = file("0");
  assert.ok(!Array.isArray(zero), String(zero));
  assert.equal(zero.defaults.upstream_kill_rounds, 0);
  assert.equal(WATCH_DEFAULTS.upstream_kill_rounds, 1);
  assert.equal(policyOf(WATCH_DEFAULTS).upstreamKillRounds, 1);
  assert.deepEqual(file("-1"), [
    "c.toml: defaults.upstream_kill_rounds: -1 is not allowed: expected a whole number from 0 to 100",
  ]);
});

Deno.test("status: an upstream incident names the peer the workers wait on", () => {
  const { state } = steps([onDb()]);
  const memory = {
    state,
    counters: freshCounters(),
    lastProbe: null,
    alertmanagerAt: null,
    restartingSince: null,
    pools: {},
  };
  const s = statusOf("www", memory, policy, null, 1_800_000_010_000);
  assert.equal(s.incident?.peer, "127.0.0.1:3306");
  assert.match(
    renderStatus([s], 1_800_000_010_000),
    /incident since \S+ \(upstream, timeout, workers blocked on 127\.0\.0\.1:3306\)/,
  );
});
