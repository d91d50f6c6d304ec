/** `status` shows a target's open crash loops. */
import assert from "node:assert/strict";
import type { ChildDeath } from "../../src/fpm/child_deaths.ts";
import { WATCH_DEFAULTS } from "../../src/config/file.ts";
import { policyOf } from "../../src/config/policy_settings.ts";
import { judgeCrashes } from "../../src/run/crash_policy.ts";
import { freshMemory } from "../../src/run/state.ts";
import { renderStatus, statusOf } from "../../src/commands/status.ts";

const LIMITS = { count: 5, windowMs: 60_000 };
const segv = (at: number): ChildDeath => ({
  at,
  pool: "www",
  pid: 1000 + at,
  signal: 11,
  name: "SIGSEGV",
  core: false,
});

Deno.test("status: an open crash loop is shown with its pool, id and count", () => {
  const open = judgeCrashes({}, [1, 2, 3, 4, 5].map((i) => segv(i)), 10, LIMITS);
  const memory = {
    ...freshMemory(),
    childCrashes: { file: null, journal: null, pools: open.pools },
  };
  const status = statusOf("php8.2-fpm", memory, policyOf(WATCH_DEFAULTS), null, 20);
  assert.deepEqual(status.childCrashes, [{
    pool: "www",
    id: "19700101-000000-001",
    since: "1970-01-01T00:00:00.001Z",
    crashes: 5,
    signals: "SIGSEGV 5",
  }]);
  assert.match(
    renderStatus([status], 20),
    /\n {2}crash loop {3}pool www since 1970-01-01T00:00:00\.001Z \(#19700101-000000-001\): 5 children crashed \(SIGSEGV 5\); not restarted\n/,
  );
  assert.equal(
    statusOf("php8.2-fpm", freshMemory(), policyOf(WATCH_DEFAULTS)).childCrashes,
    undefined,
  );
});
