import assert from "node:assert/strict";
import { freshState } from "../../src/run/recovery_policy.ts";
import { fileStateStore, freshMemory, memoryStateStore, rearmStored } from "../../src/run/state.ts";
import { freshCounters } from "../../src/record/metrics.ts";
import { statePath } from "../../src/config/settings.ts";
import { captureLogs } from "../support/fakes.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-state-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const busy = {
  counters: freshCounters(),
  lastProbe: { at: 1500, label: "502", verdict: "php_down" as const, ms: 12 },
  alertmanagerAt: 1600,
  restartingSince: null,
  pools: {
    "site-b": {
      failures: 1,
      timeouts: 1,
      failingSince: 1400,
      label: "timeout",
      kills: [1200],
      graceUntil: 1300,
      heldAt: null,
      told: true,
      overloadedAt: null,
    },
  },
  state: {
    ...freshState(),
    failures: 1,
    failingSince: 1000,
    givenUpAt: 5000,
    restarts: [{ at: 2000, ok: false, label: "502", detail: "no php-fpm8.2 process" }],
    incident: {
      id: "19700101-000001-000",
      kind: "php_down" as const,
      since: 1000,
      label: "502",
      restarts: 1,
      lastAlertAt: 2000,
    },
  },
};

Deno.test("state: saved and loaded back; the folder is made 0700", async () => {
  await withDir(async (dir) => {
    const path = statePath(`${dir}/lib/php-relaunch`, "php8.2-fpm");
    const store = fileStateStore(path);
    assert.deepEqual(await store.load(), freshMemory(), "missing: fresh, silently");
    await store.save(busy);
    assert.deepEqual(await fileStateStore(path).load(), busy);
    assert.equal((await Deno.stat(`${dir}/lib/php-relaunch`)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  });
});

Deno.test("state: a file written before incident ids and retries gets them", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/t.json`;
    const { id: _, ...incident } = busy.state.incident;
    const { retryAt: _r, retries: _n, ...state } = busy.state;
    await Deno.writeTextFile(path, JSON.stringify({ version: 1, ...state, incident }));
    const loaded = await fileStateStore(path).load();
    assert.equal(loaded.state.incident?.id, "19700101-000001-000");
    assert.equal(loaded.state.retryAt, null, "given up before retry_after: no retry planned");
    assert.equal(loaded.state.retries, 0);
    assert.deepEqual(loaded.pools, {}, "written before per-pool handling: no pool remembered");
  });
});

Deno.test("state: a pool's memory that does not parse is forgotten, the rest kept", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/t.json`;
    const { state, ...rest } = busy;
    const pools = { "site-b": { ...busy.pools["site-b"], kills: ["yesterday"] } };
    await Deno.writeTextFile(path, JSON.stringify({ version: 1, ...state, ...rest, pools }));
    const loaded = await fileStateStore(path).load();
    assert.deepEqual(loaded.pools, {});
    assert.deepEqual(loaded.state, busy.state);
  });
});

Deno.test("state: reset and SIGHUP forget a pool's kills and hold, and keep its failure told", async () => {
  const store = memoryStateStore({
    ...busy,
    pools: { "site-b": { ...busy.pools["site-b"], heldAt: 1500, kills: [1200, 1300, 1400] } },
  });
  await rearmStored(store);
  const after = await store.load();
  assert.deepEqual(after.pools["site-b"], {
    ...busy.pools["site-b"],
    failures: 0,
    timeouts: 0,
    kills: [],
    heldAt: null,
  });
  assert.equal(after.state.givenUpAt, null, "and the service's giving up, as before");
});

Deno.test("state: corrupt or unreadable is logged and reset, never a crash", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/t.json`;
    for (const bad of ["{not json", '{"version":1,"failures":-3}', '{"version":9}', ""]) {
      await Deno.writeTextFile(path, bad);
      const logs = captureLogs();
      assert.deepEqual(await fileStateStore(path).load(), freshMemory(), bad);
      assert.match(logs.lines().join("\n"), /is corrupt .*starting afresh/, bad);
    }
  });
});

Deno.test("state: a temp file left by a killed run does not block the next save", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/t.json`;
    await Deno.writeTextFile(`${path}.tmp`, "half a sta");
    await fileStateStore(path).save(busy);
    assert.deepEqual(await fileStateStore(path).load(), busy);
    await assert.rejects(() => Deno.stat(`${path}.tmp`), Deno.errors.NotFound);
  });
});

Deno.test("state: a link planted at the temp path is not followed", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/t.json`;
    await Deno.writeTextFile(`${dir}/victim`, "keep\n");
    await Deno.symlink(`${dir}/victim`, `${path}.tmp`);
    await fileStateStore(path).save(busy);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep\n");
  });
});
