/**
 * Crash loops in the incident log and the report: a record of kind child_crashes reads back,
 * has its own section (counted once, by its last record), and leaves the restarts' figures alone.
 */
import assert from "node:assert/strict";
import { type IncidentRecord, parseIncident } from "../../src/record/incidents.ts";
import { buildReport, renderReport } from "../../src/record/incident_report.ts";
import { incidentRecord } from "../support/fixtures.ts";

function crashRecord(
  at: number,
  status: "firing" | "resolved",
  signals: Record<string, number>,
  over: Partial<IncidentRecord> = {},
): IncidentRecord {
  const base = incidentRecord(at, "SIGSEGV");
  return {
    ...base,
    incident: "20261203-100001-000",
    poolName: "www",
    pool: null,
    restart: null,
    kind: "child_crashes",
    childCrashes: {
      status,
      signals,
      since: at - 5000,
      lastAt: at,
      lost: status === "firing" ? [{ request: "GET /cart.php\u001b[2J", count: 5 }] : [],
      frames: status === "firing" ? ["#0 zend_mm_alloc_heap (libphp.so + 0x1)"] : [],
    },
    ...over,
  };
}

Deno.test("crash report: a child_crashes record reads back whole", () => {
  const r = crashRecord(10_000, "firing", { SIGSEGV: 5 });
  assert.deepEqual(parseIncident(JSON.stringify(r)), r);
  assert.equal(
    typeof parseIncident(JSON.stringify({ ...r, kind: "other" })),
    "string",
    "an unknown kind is refused",
  );
});

Deno.test("crash report: its own section, each loop once; the restarts' counts stay theirs", () => {
  const records = [
    incidentRecord(1000),
    crashRecord(10_000, "firing", { SIGSEGV: 5 }),
    crashRecord(400_000, "resolved", { SIGSEGV: 220, SIGABRT: 7 }),
    crashRecord(900_000, "firing", { SIGSEGV: 6 }, { incident: "20261203-101501-000" }),
  ];
  const report = buildReport(records, 0, 1_000_000);
  assert.equal(report.incidents, 1, "the one restart");
  assert.deepEqual(report.byRung, { kill_stuck: 1 });
  assert.deepEqual(report.childCrashes, {
    "www/www": {
      incidents: 2,
      signals: { SIGSEGV: 226, SIGABRT: 7 },
      lost: [{ request: "GET /cart.php\u001b[2J", count: 10 }],
      frames: ["#0 zend_mm_alloc_heap (libphp.so + 0x1)"],
      lastAt: 900_000,
    },
  });
  const text = renderReport(report);
  assert.match(text, /Children that crashed in a loop \(php-fpm's error log; no restart made\):/);
  assert.match(text, / {2}www\/www: 2 incidents, SIGSEGV 226, SIGABRT 7; the last crash at /);
  assert.match(text, /\n +10 {2}GET \/cart\.php\\x1b\[2J\n/, "shown escaped, never obeyed");
  assert.ok(!text.includes("\u001b"));
  assert.match(text, /newest core dump:\n {6}#0 zend_mm_alloc_heap/);
});

Deno.test("crash report: only crash loops is still something to report", () => {
  const text = renderReport(
    buildReport([crashRecord(10_000, "firing", { SIGSEGV: 5 })], 0, 20_000),
  );
  assert.doesNotMatch(text, /Nothing to report/);
  assert.match(text, /www\/www: 1 incidents, SIGSEGV 5/);
});
