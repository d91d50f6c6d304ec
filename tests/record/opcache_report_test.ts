/**
 * `report`'s OPcache hints: each target's last OPcache read (its state file) names the setting to
 * raise, also when no incident was recorded; black-box through the program too.
 */
import assert from "node:assert/strict";
import { buildReport, opcacheHints, renderReport } from "../../src/record/incident_report.ts";
import { parseOpcache } from "../../src/fpm/opcache.ts";
import type { OpcacheCounters } from "../../src/record/metrics.ts";
import { fileStateStore, freshMemory } from "../../src/run/state.ts";
import { runCli, runDir } from "../support/cli.ts";
import { opcacheJson, type OpcacheShape } from "../support/opcache.ts";

const AT = Date.parse("2026-12-03T10:00:00Z");

function read(shape: OpcacheShape): OpcacheCounters {
  const r = parseOpcache(opcacheJson(shape));
  assert.ok(typeof r !== "string" && r.on);
  return { at: AT, readAt: AT, status: r.status, pendingSince: null, problem: null };
}

Deno.test("report: a full OPcache names opcache.memory_consumption; full keys max_accelerated_files; interned strings their buffer", () => {
  const hints = opcacheHints([
    { target: "web", opcache: read({ full: true, freeMb: 0.2, memoryConsumption: "64" }) },
    { target: "shop", opcache: read({ full: true, keys: 16229, maxKeys: 16229 }) },
    { target: "blog", opcache: read({ internedFreeKb: 10 }) },
    { target: "fine", opcache: read({}) },
    { target: "never", opcache: undefined },
  ]);
  assert.deepEqual(hints.map((h) => h.setting), [
    "opcache.memory_consumption",
    "opcache.max_accelerated_files",
    "opcache.interned_strings_buffer",
  ]);
  assert.match(
    hints[0]!.advice,
    /^web at 2026-12-03T10:00:00\.000Z: OPcache is full .*: raise opcache\.memory_consumption from 64 to 128/,
  );
  assert.match(hints[1]!.advice, /^shop .*16229 of 16229 keys.*from 10000 to 20000/);
  assert.match(hints[2]!.advice, /^blog .*interned-strings buffer is full.*from 8 to 16/);
});

Deno.test("report: a pool's php_admin_value[opcache.memory_consumption] is named as having no effect", () => {
  const hints = opcacheHints([
    { target: "web", opcache: read({ usedMb: -100, freeMb: 110, memoryConsumption: "8" }) },
  ]);
  assert.equal(hints.length, 1);
  assert.match(hints[0]!.advice, /cannot resize OPcache's memory.*php\.ini/);
});

Deno.test("report: OPcache's hints stand without an incident", () => {
  const report = buildReport([], AT - 86_400_000, AT);
  report.hints.push(...opcacheHints([{ target: "web", opcache: read({ full: true }) }]));
  const text = renderReport(report);
  assert.match(text, /0 incidents/);
  assert.match(text, /Tuning hints:\n {2}- opcache\.memory_consumption: web at .*OPcache is full/);
  assert.doesNotMatch(text, /Nothing to report/);
  assert.match(renderReport(buildReport([], AT - 1, AT)), /Nothing to report/);
});

Deno.test("report (the program): the last OPcache read in a state file gives its hint", async () => {
  const dir = await runDir("opcache-report-");
  try {
    const memory = freshMemory();
    memory.counters.opcache = read({
      full: true,
      memoryConsumption: "8",
      usedMb: 7.8,
      freeMb: 0.2,
    });
    await fileStateStore(`${dir.path}/php8.2-fpm.json`).save(memory);
    const r = await runCli(["report", "--state-dir", dir.path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /- opcache\.memory_consumption: php8\.2-fpm at .*: OPcache is full \(7\.8 MB used, 0\.2 MB free.*raise opcache\.memory_consumption from 8 to 16/,
    );
  } finally {
    await dir.remove();
  }
});
