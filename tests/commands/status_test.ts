import assert from "node:assert/strict";
import { cronPolicy } from "../../src/config/policy_settings.ts";
import { freshCounters } from "../../src/record/metrics.ts";
import { freshState } from "../../src/run/recovery_policy.ts";
import { type Memory } from "../../src/run/state.ts";
import { renderStatus, statusExit, statusOf } from "../../src/commands/status.ts";

const T = Date.UTC(2026, 10, 27, 12, 0, 0);
const policy = cronPolicy(5000);

/** php-fpm down since 11:58:30, three restarts in. */
const DOWN_SINCE_1158 = {
  id: "20261127-115830-000",
  kind: "php_down" as const,
  since: T - 90_000,
  label: "502",
  restarts: 3,
  lastAlertAt: T,
};

function memory(over: Partial<Memory["state"]> = {}, more: Partial<Memory> = {}): Memory {
  return {
    state: { ...freshState(), ...over },
    counters: freshCounters(),
    lastProbe: { at: T - 4000, label: "200", verdict: "healthy", ms: 7 },
    alertmanagerAt: null,
    restartingSince: null,
    pools: {},
    ...more,
  };
}

Deno.test("status: each standing from the memory, with the policy's limits", () => {
  assert.equal(statusOf("a", null, policy).standing, "unknown");
  assert.equal(statusOf("a", memory(), policy).standing, "healthy");
  const failing = statusOf("a", memory({ failures: 1, failingSince: T - 1000 }), policy);
  assert.equal(failing.standing, "failing");
  assert.deepEqual(failing.failures, { count: 1, of: 2 });
  const incident = statusOf(
    "a",
    memory({
      incident: {
        id: "20261127-115900-000",
        kind: "unreachable",
        since: T - 60_000,
        label: "refused",
        restarts: 0,
        lastAlertAt: T,
      },
    }),
    policy,
  );
  assert.equal(incident.standing, "incident");
  assert.deepEqual(incident.incident, {
    id: "20261127-115900-000",
    kind: "unreachable",
    label: "refused",
    since: "2026-11-27T11:59:00.000Z",
  });
  const gaveUp = statusOf(
    "a",
    memory({
      givenUpAt: T - 1000,
      incident: DOWN_SINCE_1158,
      restarts: [
        { at: T - 80_000, ok: false, label: "502", detail: "no php-fpm8.2 process" },
        { at: T - 40_000, ok: false, label: "502", detail: "start timed out" },
      ],
    }),
    policy,
  );
  assert.equal(gaveUp.standing, "given_up");
  assert.deepEqual(gaveUp.restarts, { used: 2, max: 3, windowMinutes: 15 });
  assert.deepEqual(gaveUp.lastRestart, {
    at: "2026-11-27T11:59:20.000Z",
    ok: false,
    cause: "502: start timed out",
  });
  assert.equal(statusExit([statusOf("a", memory(), policy), statusOf("b", null, policy)]), 0);
  assert.equal(statusExit([statusOf("a", memory(), policy), failing]), 3);
  assert.equal(statusExit([gaveUp]), 3);
});

Deno.test("status: the text says the standing, the last probe and the restarts", () => {
  const text = renderStatus([
    statusOf("php8.2-fpm", memory(), policy),
    statusOf("legacy", null, policy),
  ], T);
  assert.equal(
    text,
    [
      "php8.2-fpm: healthy",
      "  last probe   200 (healthy) in 7 ms, 4 s ago",
      "  restarts     0 of at most 3 in 15 min",
      "legacy: not probed yet",
      "  restarts     0 of at most 3 in 15 min",
      "",
    ].join("\n"),
  );
  assert.equal(renderStatus([], T), "no target has a state file yet\n");
});

Deno.test("status: another's words (a pause's reason, a restart's cause) stay one line, unobeyed", () => {
  const text = renderStatus([
    statusOf(
      "php8.2-fpm",
      memory({
        restarts: [{ at: T - 60_000, ok: false, label: "502", detail: "said \x1b[2J\nrm -rf" }],
      }),
      policy,
    ),
  ], T);
  // deno-lint-ignore no-control-regex -- the point: no escape sequence, no extra line
  assert.doesNotMatch(text.replaceAll("\n", ""), /[\x00-\x1f\x7f]/);
  assert.match(text, /said \\x1b\[2J\\nrm -rf/);
});

Deno.test("status: paused, restarting, the next retry and the incident's id", () => {
  const pause = { at: T - 60_000, until: T + 600_000, by: "alice", reason: "deploy 42" };
  const gaveUp = statusOf(
    "web",
    memory(
      {
        givenUpAt: T - 1000,
        retryAt: T + 299_000,
        incident: DOWN_SINCE_1158,
      },
      { restartingSince: T - 2000 },
    ),
    policy,
    pause,
    T,
  );
  assert.equal(gaveUp.nextRetryAt, "2026-11-27T12:04:59.000Z");
  assert.deepEqual(gaveUp.paused, {
    until: "2026-11-27T12:10:00.000Z",
    by: "alice",
    reason: "deploy 42",
  });
  assert.equal(gaveUp.restartingSince, "2026-11-27T11:59:58.000Z");
  assert.equal(gaveUp.incident?.id, "20261127-115830-000");
  const text = renderStatus([gaveUp], T);
  assert.match(
    text,
    /^web: given up at 2026-11-27T11:59:59\.000Z \(next retry at 2026-11-27T12:04:59\.000Z;/,
  );
  assert.match(text, /\n {2}paused {7}until 2026-11-27T12:10:00\.000Z by alice: deploy 42\n/);
  assert.match(text, /\n {2}restarting {3}since 2026-11-27T11:59:58\.000Z\n/);
  assert.match(text, /\n {2}incident {5}#20261127-115830-000\n/);
  const expired = statusOf("web", memory(), policy, { ...pause, until: T - 1 }, T);
  assert.equal(expired.paused, null, "a pause past its time is over, even before a run removes it");
});

Deno.test("status: each pool of a target with several, a failing one with its kills and hold", () => {
  const counters = {
    ...freshCounters(),
    pools: {
      www: { up: true, killsOk: 0, killsFailed: 0 },
      shop: { up: false, killsOk: 1, killsFailed: 2 },
    },
  };
  const shop = {
    failures: 4,
    timeouts: 4,
    failingSince: T - 120_000,
    label: "timeout",
    // one kill is older than the 15 min window: not counted
    kills: [T - 20 * 60_000, T - 100_000, T - 80_000, T - 60_000],
    graceUntil: T - 50_000,
    heldAt: T - 30_000,
    told: true,
    overloadedAt: null,
  };
  const s = statusOf("web", memory({}, { counters, pools: { shop } }), policy, null, T);
  assert.deepEqual(s.pools, [
    { name: "www", up: true, failingSince: null, kills: 0, heldAt: null },
    {
      name: "shop",
      up: false,
      failingSince: "2026-11-27T11:58:00.000Z",
      kills: 3,
      heldAt: "2026-11-27T11:59:30.000Z",
    },
  ]);
  assert.equal(s.standing, "healthy", "the service answers through www");
  assert.equal(statusExit([s]), 3, "but a pool does not");
  const text = renderStatus([s], T);
  assert.match(text, /\n {2}pool www {5}answering\n/);
  assert.match(
    text,
    /\n {2}pool shop {4}failing since 2026-11-27T11:58:00\.000Z; 3 attempts to kill its stuck workers; held since 2026-11-27T11:59:30\.000Z/,
  );
  assert.equal(statusExit([statusOf("web", memory(), policy, null, T)]), 0);
});
