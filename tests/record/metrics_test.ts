import assert from "node:assert/strict";
import parse from "parse-prometheus-text-format";
import {
  countGiveUp,
  countPool,
  countProbe,
  countRestart,
  freshCounters,
  renderMetrics,
  writeMetricsFile,
} from "../../src/record/metrics.ts";
import { fileStateStore } from "../../src/run/state.ts";
import { statusOf } from "../support/pool.ts";

type Family = {
  name: string;
  type: string;
  metrics: {
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }[];
};

/** The families of an exposition, by name, as Prometheus's text format parser reads them. */
function families(text: string): Map<string, Family> {
  return new Map((parse(text) as Family[]).map((f) => [f.name, f]));
}

Deno.test("metrics: probes by verdict and answer, a latency histogram, restarts, give-ups, pool gauges", async () => {
  let c = freshCounters();
  c = countProbe(c, "healthy", "200", 12);
  c = countProbe(c, "healthy", "200", 300);
  c = countProbe(c, "php_down", "timeout", 5001);
  c = countRestart(c, true, 1_700_000_000_000);
  c = countRestart(c, false, 1_700_000_100_000);
  c = countGiveUp(c);
  c = countPool(c, statusOf({ busy: 3, idleWorkers: 2, maxChildrenReached: 7 }));
  c = { ...c, poolMemory: { sumKb: 1000, largestKb: 300 } };
  const other = countProbe(freshCounters(), "unreachable", "refused", 1);
  const text = await renderMetrics([{ name: "www", counters: c }, {
    name: "api",
    counters: other,
  }]);
  const f = families(text);
  assert.deepEqual(
    f.get("php_relaunch_pool_resident_bytes")?.metrics.map((m) => [m.labels?.target, m.value]),
    [["www", "1024000"]],
    "the pool's memory where it was read, not for a target never read",
  );
  assert.equal(
    f.get("php_relaunch_pool_largest_worker_bytes")?.metrics[0]?.value,
    "307200",
  );
  // a master of several pools: each pool's workers, labelled with the pool
  const several = {
    ...c,
    poolMemory: {
      sumKb: 1000,
      largestKb: 300,
      byPool: { www: { sumKb: 400, largestKb: 300 }, shop: { sumKb: 500, largestKb: 250 } },
    },
  };
  const byPool = families(await renderMetrics([{ name: "web", counters: several }]));
  assert.deepEqual(
    byPool.get("php_relaunch_pool_resident_bytes")?.metrics.map((m) => [m.labels, m.value]),
    [[{ target: "web", pool: "www" }, "409600"], [{ target: "web", pool: "shop" }, "512000"]],
  );
  assert.deepEqual(
    byPool.get("php_relaunch_pool_largest_worker_bytes")?.metrics.map((m) => m.value),
    ["307200", "256000"],
  );

  const probes = f.get("php_relaunch_probes_total")!;
  assert.equal(probes.type, "COUNTER");
  assert.deepEqual(
    probes.metrics.map((m) => [m.labels?.target, m.labels?.verdict, m.labels?.answer, m.value]),
    [
      ["www", "healthy", "200", "2"],
      ["www", "php_down", "timeout", "1"],
      ["api", "unreachable", "refused", "1"],
    ],
  );
  // parse-prometheus-text-format folds a labelled histogram into one sample, so its lines are
  // checked as text: cumulative buckets, +Inf, sum and count per target
  assert.equal(f.get("php_relaunch_probe_duration_seconds")?.type, "HISTOGRAM");
  const line = (suffix: string, labels: string) =>
    new RegExp(`^php_relaunch_probe_duration_seconds_${suffix}\\{${labels}\\} (\\S+)$`, "m")
      .exec(text)?.[1];
  assert.equal(line("bucket", 'target="www",le="0.025"'), "1");
  assert.equal(line("bucket", 'target="www",le="0.5"'), "2");
  assert.equal(line("bucket", 'target="www",le="5"'), "2", "5.001 s is above the 5 s bucket");
  assert.equal(line("bucket", 'target="www",le="10"'), "3");
  assert.equal(line("bucket", 'target="www",le="\\+Inf"'), "3");
  assert.equal(line("count", 'target="www"'), "3");
  assert.equal(Number(line("sum", 'target="www"')), 0.012 + 0.3 + 5.001);
  assert.equal(line("count", 'target="api"'), "1");

  const restarts = f.get("php_relaunch_restarts_total")!;
  assert.deepEqual(
    restarts.metrics.filter((m) => m.labels?.target === "www").map((
      m,
    ) => [m.labels?.result, m.value]),
    [["ok", "1"], ["failed", "1"]],
  );
  assert.equal(f.get("php_relaunch_give_ups_total")!.metrics[0]?.value, "1");
  assert.equal(
    f.get("php_relaunch_last_restart_timestamp_seconds")!.metrics[0]?.value,
    "1700000100",
  );
  assert.equal(f.get("php_relaunch_pool_active_processes")!.metrics[0]?.value, "3");
  assert.deepEqual(
    f.get("php_relaunch_pool_active_processes")!.metrics[0]?.labels,
    { target: "www", pool: "www" },
    "which pool of the service",
  );
  assert.equal(f.get("php_relaunch_pool_max_children_reached")!.metrics[0]?.value, "7");
  assert.deepEqual(
    f.get("php_relaunch_pool_idle_processes")!.metrics.map((m) => m.labels?.target),
    ["www"],
    "no pool gauges for a target without a status page",
  );
});

Deno.test("metrics file: written whole by rename, 0644, never through a link", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/php-relaunch.prom`;
    await writeMetricsFile(path, "a 1\n");
    await writeMetricsFile(path, "a 2\n");
    assert.equal(await Deno.readTextFile(path), "a 2\n");
    assert.equal(((await Deno.stat(path)).mode ?? 0) & 0o777, 0o644);
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["php-relaunch.prom"], "no temporary file left");
    await Deno.writeTextFile(`${dir}/victim`, "keep\n");
    await Deno.symlink(`${dir}/victim`, `${dir}/link.prom`);
    await assert.rejects(() => writeMetricsFile(`${dir}/link.prom`, "x 1\n"), /symbolic link/);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep\n");
    // a link planted at the temporary path is removed, never written through
    await Deno.symlink(`${dir}/victim`, `${dir}/x.prom.tmp`);
    await writeMetricsFile(`${dir}/x.prom`, "x 1\n");
    assert.equal(await Deno.readTextFile(`${dir}/x.prom`), "x 1\n");
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("counters live in the state file: cron runs add up; missing or corrupt ones start at zero", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = fileStateStore(`${dir}/www.json`);
    const memory = await store.load();
    await store.save({ ...memory, counters: countProbe(memory.counters, "healthy", "200", 5) });
    assert.equal((await store.load()).counters.probes["healthy 200"], 1);
    // a state file from before the metrics: everything else is kept
    const saved = JSON.parse(await Deno.readTextFile(`${dir}/www.json`));
    delete saved.counters;
    saved.failures = 1;
    await Deno.writeTextFile(`${dir}/www.json`, JSON.stringify(saved));
    const old = await store.load();
    assert.equal(old.state.failures, 1);
    assert.deepEqual(old.counters, freshCounters());
    saved.counters = { probes: "garbage" };
    await Deno.writeTextFile(`${dir}/www.json`, JSON.stringify(saved));
    assert.deepEqual((await store.load()).counters, freshCounters());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
