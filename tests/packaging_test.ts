/** The fleet files stay in step with the metrics: every metric they name is one php-relaunch writes. */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { families, freshCounters } from "../src/record/metrics.ts";
import { ROOT } from "./support/cli.ts";

/** Every series name php-relaunch exposes, histogram suffixes included. */
function exposed(): Set<string> {
  const names = new Set<string>();
  for (const f of families([{ name: "t", counters: freshCounters() }])) {
    names.add(f.name);
    if (f.type === "histogram") {
      for (const suffix of ["_bucket", "_sum", "_count"]) names.add(f.name + suffix);
    }
  }
  return names;
}

function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\bphp_relaunch_[a-z_]+/g)].map((m) => m[0]);
}

Deno.test("alerting rules: valid YAML, each rule with a severity, only metrics that exist", async () => {
  const text = await Deno.readTextFile(`${ROOT}/packaging/prometheus/php-relaunch.rules.yml`);
  const doc = parse(text) as {
    groups: {
      name: string;
      rules: { alert: string; expr: string; labels: { severity: string } }[];
    }[];
  };
  const rules = doc.groups.flatMap((g) => g.rules);
  assert.ok(rules.length >= 5);
  const names = exposed();
  for (const rule of rules) {
    assert.match(rule.alert, /^[A-Z][A-Za-z]+$/);
    assert.ok(["warning", "critical"].includes(rule.labels.severity), rule.alert);
    for (const metric of metricsIn(rule.expr)) {
      assert.ok(names.has(metric), `${rule.alert}: ${metric}`);
    }
  }
  for (const alert of ["PhpFpmRestarted", "PhpFpmRestartFailed", "PhpRelaunchGaveUp"]) {
    assert.ok(rules.some((r) => r.alert === alert), alert);
  }
});

Deno.test("Grafana dashboard: latency, verdicts, restarts and pool gauges per host, from metrics that exist", async () => {
  const dash = JSON.parse(
    await Deno.readTextFile(`${ROOT}/packaging/grafana/php-relaunch.json`),
  ) as {
    panels: { title: string; targets: { expr: string }[] }[];
    templating: { list: { name: string }[] };
  };
  assert.deepEqual(dash.templating.list.map((v) => v.name), ["datasource", "instance", "target"]);
  const names = exposed();
  const used = new Set<string>();
  for (const panel of dash.panels) {
    for (const t of panel.targets) {
      assert.match(t.expr, /instance=~"\$instance"/, `${panel.title}: filtered by host`);
      for (const metric of metricsIn(t.expr)) {
        assert.ok(names.has(metric), `${panel.title}: ${metric}`);
        used.add(metric);
      }
    }
  }
  for (
    const metric of [
      "php_relaunch_probe_duration_seconds_bucket",
      "php_relaunch_probes_total",
      "php_relaunch_restarts_total",
      "php_relaunch_pool_active_processes",
    ]
  ) assert.ok(used.has(metric), `the dashboard shows ${metric}`);
});
