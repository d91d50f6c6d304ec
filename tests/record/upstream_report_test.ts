import assert from "node:assert/strict";
import { buildReport, renderReport } from "../../src/record/incident_report.ts";
import { parseIncident } from "../../src/record/incidents.ts";
import { incidentRecord } from "../support/fixtures.ts";

const AT = 1_800_000_000_000;

/** An upstream incident's record: its workers blocked on `peer`. */
function blockedOn(peer: string, at: number) {
  const r = incidentRecord(at);
  return {
    ...r,
    evidence: { ...r.evidence, upstream: { peer, blocked: 4, of: 5, forMs: 40_000 } },
  };
}

Deno.test("report: upstream incidents by the peer their workers waited on, and a hint naming it", () => {
  const incidents = [
    blockedOn("127.0.0.1:3306", AT),
    blockedOn("127.0.0.1:3306", AT + 1000),
    blockedOn("/run/redis/redis.sock", AT + 2000),
    incidentRecord(AT + 3000),
  ];
  const r = buildReport(incidents, AT - 1, AT + 10_000);
  assert.deepEqual(r.upstreams, { "127.0.0.1:3306": 2, "/run/redis/redis.sock": 1 });
  const hint = r.hints.find((h) => h.setting === "upstream");
  assert.match(hint?.advice ?? "", /blocked on 127\.0\.0\.1:3306 in 2 of 4 incidents/);
  const text = renderReport(r);
  assert.match(
    text,
    /Upstreams the workers waited on \(incidents; restarts held back\):\n\s+2 {2}127\.0\.0\.1:3306\n\s+1 {2}\/run\/redis\/redis\.sock/,
  );
  const none = buildReport([incidentRecord(AT)], AT - 1, AT + 1);
  assert.deepEqual(none.upstreams, {});
  assert.doesNotMatch(renderReport(none), /Upstreams/);
});

Deno.test("an incident record keeps the peer; one written before has none", () => {
  const kept = parseIncident(JSON.stringify(blockedOn("127.0.0.1:3306", AT)));
  assert.ok(typeof kept !== "string", String(kept));
  assert.equal(kept.evidence.upstream?.peer, "127.0.0.1:3306");
  const old = parseIncident(JSON.stringify(incidentRecord(AT)));
  assert.ok(typeof old !== "string", String(old));
  assert.equal(old.evidence.upstream, undefined);
});
