import assert from "node:assert/strict";
import {
  type Action,
  afterRestart,
  configPassesAgain,
  counted,
  decide,
  freshState,
  noticeMaster,
  rearm,
  type TargetState,
} from "../../src/run/recovery_policy.ts";
import type { ProbeResult } from "../../src/probe/result.ts";
import type { Policy } from "../../src/config/policy_settings.ts";

const S = 1000;
const MIN = 60 * S;

/** The watch-mode defaults. */
const policy: Policy = {
  failureThreshold: 2,
  timeoutThreshold: 2,
  successThreshold: 1,
  confirmDelayMs: 1 * S,
  intervalMs: 5 * S,
  gracePeriodMs: 10 * S,
  maxRestarts: 3,
  restartWindowMs: 15 * MIN,
  rearmAfterMs: 15 * MIN,
  reminderMs: 0,
  onOverload: "alert",
  // the tests of giving up before retry_after; retries have their own
  retryAfterMs: [],
  pauseDefaultMs: 30 * MIN,
  pauseMaxMs: 240 * MIN,
};

const ok: ProbeResult = { kind: "status", status: 200, detail: "", ms: 3 };
const e502: ProbeResult = { kind: "status", status: 502, detail: "", ms: 3 };
const timeout: ProbeResult = { kind: "timeout", detail: "", ms: 5000 };
const refused: ProbeResult = { kind: "refused", detail: "", ms: 1 };
const closed: ProbeResult = { kind: "closed", detail: "", ms: 1 };

/** Feeds probe results at the given times; restarts succeed unless said otherwise. */
function play(
  steps: Array<[number, ProbeResult]>,
  p: Policy = policy,
  opts: { restartOk?: boolean | ((at: number) => boolean); start?: TargetState } = {},
) {
  let state = opts.start ?? freshState();
  const log: Array<{ at: number; actions: Action[]; next: string }> = [];
  for (const [at, result] of steps) {
    const d = decide(state, result, at, p);
    state = d.state;
    log.push({ at, actions: d.actions, next: d.next });
    if (d.actions.some((a) => a.type === "restart")) {
      state = afterRestart(state, {
        at,
        ok: typeof opts.restartOk === "function" ? opts.restartOk(at) : opts.restartOk ?? true,
        label: "502",
        detail: "",
      }, p);
    }
  }
  const kinds = (type: string) =>
    log.flatMap((l) =>
      l.actions.filter((a) => a.type === type).map((a) =>
        a.type === "alert"
          ? `${l.at}:${a.reason}`
          : a.type === "restart" && a.retry
          ? `${l.at}:retry`
          : `${l.at}`
      )
    );
  return { state, log, restarts: kinds("restart"), alerts: kinds("alert") };
}

Deno.test("a single stray 5xx restarts nothing; it is confirmed after confirm_delay", () => {
  const r = play([[0, e502], [1 * S, ok], [6 * S, ok]]);
  assert.deepEqual(r.restarts, []);
  assert.deepEqual(r.alerts, [], "no incident, no recovery alert");
  assert.equal(r.log[0]!.next, "confirm");
});

Deno.test("two 5xx in a row (a crash): restart at the confirming probe", () => {
  const r = play([[0, e502], [1 * S, e502]], { ...policy, successThreshold: 2 });
  assert.deepEqual(r.restarts, [`${1 * S}`]);
  assert.equal(
    r.state.incident?.since,
    0 - e502.ms,
    "downtime counts from the start of the first failed probe",
  );
});

Deno.test("timeouts: confirmed after the interval, threshold of their own", () => {
  const r = play([[0, timeout], [10 * S, timeout]]);
  assert.equal(r.log[0]!.next, "interval");
  assert.deepEqual(r.restarts, [`${10 * S}`]);
  const original = play([[0, timeout]], { ...policy, timeoutThreshold: 1 });
  assert.deepEqual(original.restarts, ["0"], "the positional form: one timeout is enough");
});

Deno.test("a healthy probe resets the count", () => {
  const r = play([[0, e502], [1 * S, ok], [6 * S, e502], [7 * S, ok]]);
  assert.deepEqual(r.restarts, []);
});

Deno.test("grace period after a restart: failures do not count", () => {
  const r = play([[0, e502], [1 * S, e502], [5 * S, e502], [8 * S, e502], [12 * S, e502], [
    13 * S,
    e502,
  ]]);
  // restart at 1 s; 5 s and 8 s fall in the grace (until 11 s); 12 s and 13 s count again
  assert.deepEqual(r.restarts, [`${1 * S}`, `${13 * S}`]);
});

Deno.test("a verified restart ends the incident when one healthy probe is enough: no second alert", () => {
  const r = play([[0, e502], [1 * S, e502], [12 * S, ok], [17 * S, ok]]);
  assert.deepEqual(r.restarts, [`${1 * S}`]);
  assert.deepEqual(r.alerts, []);
  assert.equal(r.state.incident, null);
  assert.equal(r.state.restarts.length, 1, "still counts for flap protection");
});

Deno.test("recovered: one alert with the downtime once success_threshold is met", () => {
  const p = { ...policy, successThreshold: 2 };
  // the restart's own verification is the first healthy probe
  const r = play([[0, e502], [1 * S, e502], [12 * S, ok], [17 * S, ok], [22 * S, ok]], p);
  assert.deepEqual(r.alerts, [`${12 * S}:recovered`]);
  const alert = r.log[2]!.actions.find((a) => a.type === "alert");
  assert.equal(alert?.type === "alert" && alert.downtimeMs, 12 * S + e502.ms);
  assert.equal(r.state.incident, null);
});

Deno.test("flap protection: at most max_restarts in the window, then one 'giving up' alert", () => {
  const steps: Array<[number, ProbeResult]> = [];
  for (let t = 0; t < 10 * MIN; t += 5 * S) steps.push([t, e502]);
  const r = play(steps, policy, { restartOk: false });
  assert.equal(r.restarts.length, 3);
  assert.equal(r.alerts.filter((a) => a.endsWith(":gave_up")).length, 1);
  assert.ok(r.state.givenUpAt !== null);
  assert.equal(r.state.restarts.length, 3, "the history is kept for the alert");
});

Deno.test("given up: keeps probing, re-arms after a healthy window", () => {
  const steps: Array<[number, ProbeResult]> = [];
  let t = 0;
  for (; t < 2 * MIN; t += 5 * S) steps.push([t, e502]);
  for (; t < 20 * MIN; t += 5 * S) steps.push([t, ok]);
  steps.push([t, e502], [t + S, e502]);
  const r = play(steps, policy, { restartOk: false });
  assert.equal(r.restarts.length, 4, "3 before giving up, 1 after re-arming");
  assert.ok(
    r.log.some((l) => l.actions.some((a) => a.type === "log" && /armed again/.test(a.message))),
  );
  assert.equal(r.alerts.filter((a) => a.endsWith(":recovered")).length, 1);
});

const RETRY = { ...policy, retryAfterMs: [5 * MIN, 15 * MIN, 60 * MIN] };

/** 502s every 5 s from 0 until `until`; restarts fail. */
function downFor(until: number, p: Policy = RETRY, ok: (at: number) => boolean = () => false) {
  const steps: Array<[number, ProbeResult]> = [];
  for (let t = 0; t < until; t += 5 * S) steps.push([t, e502]);
  return play(steps, p, { restartOk: ok });
}

Deno.test("retry_after: given up, one retry after 5 min, 15 min, 1 h, then hourly", () => {
  const r = downFor(4 * 60 * MIN);
  const gaveUpAt = Number(r.alerts.find((a) => a.endsWith(":gave_up"))!.split(":")[0]);
  const retries = r.restarts.filter((x) => x.endsWith(":retry")).map((x) =>
    (Number(x.split(":")[0]) - gaveUpAt) / MIN
  );
  // each delay counts from the attempt before, on the next probe (every 5 s) at or after it
  assert.deepEqual(retries, [5, 20, 80, 140, 200]);
  assert.equal(r.restarts.filter((x) => !x.endsWith(":retry")).length, 3);
  assert.equal(r.state.retries, 5);
  assert.ok(r.state.givenUpAt !== null, "failed retries stay given up");
  assert.equal(r.alerts.filter((a) => a.endsWith(":gave_up")).length, 1);
});

Deno.test("retry_after: the gave_up decision plans the first retry; [] never retries", () => {
  const r = downFor(3 * MIN);
  assert.ok(r.state.givenUpAt !== null);
  assert.equal(r.state.retryAt, r.state.givenUpAt + 5 * MIN);
  const never = downFor(4 * 60 * MIN, { ...RETRY, retryAfterMs: [] });
  assert.equal(never.restarts.length, 3, "today's behaviour: given up until re-armed");
  assert.equal(never.state.retryAt, null);
});

Deno.test("retry_after: a retry that works re-arms; the next crash is restarted as usual", () => {
  const gaveUp = downFor(3 * MIN).state.givenUpAt!;
  const steps: Array<[number, ProbeResult]> = [];
  let t = 0;
  for (; t <= gaveUp + 5 * MIN; t += 5 * S) steps.push([t, e502]);
  for (const end = t + MIN; t < end; t += 5 * S) steps.push([t, ok]);
  steps.push([t, e502], [t + S, e502]);
  const r = play(steps, RETRY, { restartOk: (at) => at > gaveUp });
  assert.deepEqual(r.restarts.slice(3), [`${gaveUp + 5 * MIN}:retry`, `${t + S}`]);
  assert.equal(r.state.givenUpAt, null, "armed again");
  assert.equal(r.state.retryAt, null);
  assert.equal(r.state.retries, 0);
  assert.equal(r.state.restarts.length, 2, "the retry began the new window");
});

Deno.test("retry_after: a state from before it gets a retry planned from giving up", () => {
  const start = { ...freshState(), givenUpAt: 0, incident: null };
  const r = play([[4 * MIN, e502], [4 * MIN + S, e502], [5 * MIN, e502]], RETRY, {
    start,
    restartOk: false,
  });
  assert.deepEqual(r.restarts, [`${5 * MIN}:retry`]);
});

Deno.test("restarts outside the window do not count", () => {
  const steps: Array<[number, ProbeResult]> = [];
  for (const start of [0, 10 * MIN, 20 * MIN, 30 * MIN]) {
    steps.push([start, e502], [start + S, e502], [start + 20 * S, ok]);
  }
  const r = play(steps);
  assert.equal(r.restarts.length, 4);
  assert.equal(r.alerts.filter((a) => a.endsWith(":gave_up")).length, 0);
});

Deno.test("rearm (reset, SIGHUP) forgets giving up and the history", () => {
  const s = {
    ...freshState(),
    givenUpAt: 5,
    restarts: [{ at: 1, ok: false, label: "502", detail: "" }],
  };
  assert.deepEqual(rearm({ ...s, retryAt: 9, retries: 2 }), {
    ...s,
    givenUpAt: null,
    restarts: [],
    retryAt: null,
    retries: 0,
  });
});

Deno.test("nginx down or misconfigured: one alert per incident, never a restart", () => {
  const r = play([[0, refused], [5 * S, refused], [10 * S, refused], [15 * S, ok]]);
  assert.deepEqual(r.restarts, []);
  assert.deepEqual(r.alerts, ["0:unreachable", `${15 * S}:recovered`]);
  const m = play([[0, closed], [5 * S, closed], [10 * S, refused]]);
  assert.deepEqual(m.alerts, ["0:misconfigured", `${10 * S}:unreachable`]);
});

Deno.test("reminders only when configured", () => {
  const steps: Array<[number, ProbeResult]> = [];
  for (let t = 0; t <= 30 * MIN; t += MIN) steps.push([t, refused]);
  assert.equal(play(steps).alerts.length, 1);
  const reminded = play(steps, { ...policy, reminderMs: 10 * MIN });
  assert.deepEqual(reminded.alerts, [
    "0:unreachable",
    `${10 * MIN}:reminder`,
    `${20 * MIN}:reminder`,
    `${30 * MIN}:reminder`,
  ]);
});

Deno.test("nginx going down breaks a run of php failures", () => {
  const r = play([[0, e502], [1 * S, refused], [6 * S, e502], [7 * S, ok]]);
  assert.deepEqual(r.restarts, []);
});

const busyTimeout: ProbeResult = {
  ...timeout,
  pool: { verdict: "busy", why: "all 5 workers busy, yet 12 new requests were taken" },
};
const hungTimeout: ProbeResult = {
  ...timeout,
  pool: { verdict: "hung", why: "none took a new request" },
};

Deno.test("busy is not hung: an overloaded pool gets one alert and no restart", () => {
  const r = play([[0, busyTimeout], [10 * S, busyTimeout], [20 * S, busyTimeout], [30 * S, ok]]);
  assert.deepEqual(r.restarts, []);
  assert.deepEqual(r.alerts, ["0:overloaded", `${30 * S}:recovered`]);
  assert.equal(r.state.failures, 0, "an overloaded pool's timeouts do not add up to a restart");
});

Deno.test("on_overload = restart: an overloaded pool's timeouts count as usual", () => {
  const r = play([[0, busyTimeout], [10 * S, busyTimeout]], { ...policy, onOverload: "restart" });
  assert.deepEqual(r.restarts, [`${10 * S}`]);
});

Deno.test("a hang confirmed by the status page restarts at the first timeout", () => {
  const r = play([[0, hungTimeout]], { ...policy, timeoutThreshold: 2 });
  assert.deepEqual(r.restarts, ["0"]);
  // without the status page's word the second timeout is still needed
  assert.deepEqual(play([[0, timeout]], { ...policy, timeoutThreshold: 2 }).restarts, []);
});

Deno.test("certain by the process table: a crash or a hang restarts at the first failure, not in grace", () => {
  const crash: ProbeResult = { ...e502, certain: { kind: "crash", why: "master 100 is gone" } };
  const hang: ProbeResult = { ...timeout, certain: { kind: "hang", why: "all stopped" } };
  assert.deepEqual(play([[0, crash]]).restarts, ["0"]);
  assert.deepEqual(play([[0, hang]]).restarts, ["0"]);
  // uncertain, the same failures are confirmed first
  assert.deepEqual(play([[0, e502]]).restarts, []);
  // within the grace after a restart, even a certain failure waits
  const r = play([[0, crash], [5 * S, crash], [11 * S, crash]]);
  assert.deepEqual(r.restarts, ["0", `${11 * S}`]);
});

Deno.test("a master that changes without us opens the grace: a deploy's 502s restart nothing", () => {
  let state = noticeMaster(freshState(), 100, 0, policy).state;
  assert.equal(state.masterPid, 100, "first seen: remembered, no grace");
  assert.equal(state.graceUntil, 0);
  assert.deepEqual(noticeMaster(state, 100, 1000, policy).actions, [], "the same master: nothing");
  assert.deepEqual(noticeMaster(state, null, 1000, policy).state, state, "no pid file: nothing");
  const seen = noticeMaster(state, 200, 60 * S, policy);
  state = seen.state;
  assert.equal(state.graceUntil, 70 * S);
  assert.match(seen.actions[0]!.message, /master changed without us \(100 -> 200\): 10 s of grace/);
  // the deploy's 502s, then healthy: no restart
  const r = play([[61 * S, e502], [62 * S, e502], [66 * S, ok]], policy, { start: state });
  assert.deepEqual(r.restarts, []);
  // past the grace a crash is restarted as usual
  assert.deepEqual(play([[71 * S, e502], [72 * S, e502]], policy, { start: state }).restarts, [
    `${72 * S}`,
  ]);
});

Deno.test("given up, then php-fpm started by someone else and healthy: armed again at once", () => {
  const gaveUp = play(
    [
      [0, e502],
      [1 * S, e502],
      [20 * S, e502],
      [21 * S, e502],
      [40 * S, e502],
      [
        41 * S,
        e502,
      ],
      [60 * S, e502],
      [61 * S, e502],
    ],
    policy,
    { restartOk: false },
  ).state;
  assert.notEqual(gaveUp.givenUpAt, null);
  const fixed = noticeMaster({ ...gaveUp, masterPid: 100 }, 300, 70 * S, policy).state;
  assert.equal(fixed.rearmWhenHealthy, true);
  const d = decide(fixed, ok, 71 * S, policy);
  assert.equal(
    d.state.givenUpAt,
    null,
    "re-armed by the first healthy probe (success_threshold 1)",
  );
  assert.deepEqual(d.state.restarts, []);
  assert.match(
    (d.actions.find((a) => a.type === "log") as { message: string }).message,
    /master started by someone else: restarting is armed again/,
  );
  // without a master of someone else, healthy alone waits for rearm_after
  assert.notEqual(decide(gaveUp, ok, 71 * S, policy).state.givenUpAt, null);
});

Deno.test("a start the configuration test refused: not counted, no grace, no start until it passes", () => {
  let state = freshState();
  // two refused starts and one that worked: the budget holds one, not three
  for (const at of [0, 10 * S]) {
    state = afterRestart(
      state,
      { at, ok: false, label: "502", detail: "", rejected: true },
      policy,
    );
    assert.equal(state.graceUntil, 0, "nothing is starting: no grace");
    assert.equal(state.configRejectedAt, at);
  }
  // while refused, failures restart nothing
  for (let t = 11 * S; t < 60 * S; t += 5 * S) {
    const d = decide(state, e502, t, policy);
    assert.ok(!d.actions.some((a) => a.type === "restart"), `no restart at ${t}`);
    assert.ok(!d.actions.some((a) => a.type === "alert"), "and no new alert");
    state = d.state;
  }
  assert.equal(state.givenUpAt, null, "never given up for it");
  const passes = configPassesAgain(state);
  assert.equal(passes.state.configRejectedAt, null);
  assert.deepEqual(passes.state.restarts, [], "the budget whole");
  assert.equal(passes.actions.length, 1);
  assert.ok(decide(passes.state, e502, 61 * S, policy).actions.some((a) => a.type === "restart"));
  assert.deepEqual(configPassesAgain(freshState()), { state: freshState(), actions: [] });
  // counted: the refused ones are not
  const mixed = [
    { at: 0, ok: false, label: "502", detail: "", rejected: true },
    { at: 1, ok: true, label: "502", detail: "" },
  ];
  assert.deepEqual(counted(mixed), [mixed[1]]);
});

Deno.test("a master someone else started that answers: the restart budget is whole again", () => {
  let state = noticeMaster(freshState(), 100, 0, policy).state;
  state = afterRestart(state, { at: 1 * S, ok: true, label: "502", detail: "" }, policy);
  state = afterRestart(state, { at: 40 * S, ok: true, label: "502", detail: "" }, policy);
  assert.equal(state.restarts.length, 2);
  // the operator's own restart: another master, then healthy
  const seen = noticeMaster(state, 200, 60 * S, policy);
  assert.equal(seen.state.rearmWhenHealthy, true);
  const d = decide(seen.state, ok, 75 * S, policy);
  assert.deepEqual(d.state.restarts, []);
  assert.ok(
    d.actions.some((a) => a.type === "log" && /restart budget is whole again/.test(a.message)),
  );
  // our own restart's master is not someone else's: nothing changes
  const ours = noticeMaster(state, state.masterPid, 60 * S, policy);
  assert.equal(ours.state.rearmWhenHealthy, false);
});
