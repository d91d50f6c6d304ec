import assert from "node:assert/strict";
import { rungsFor } from "../../src/run/responder.ts";
import type { ProbeResult } from "../../src/probe/result.ts";

const e502: ProbeResult = { kind: "status", status: 502, detail: "", ms: 3 };
const LADDER = ["kill_stuck", "reload", "restart", "kill"] as const;

Deno.test("a certain crash or hang goes to the kill rung: nothing is left for the gentle ones", () => {
  assert.deepEqual(rungsFor(e502, LADDER), LADDER, "uncertain: the whole ladder");
  const crash = { ...e502, certain: { kind: "crash" as const, why: "master 1 is gone" } };
  assert.deepEqual(rungsFor(crash, LADDER), ["kill"]);
  const hang = { ...e502, certain: { kind: "hang" as const, why: "all stopped" } };
  assert.deepEqual(rungsFor(hang, LADDER), ["kill"]);
  // a ladder without kill is the operator's choice, kept
  assert.deepEqual(rungsFor(crash, ["reload", "restart"]), ["reload", "restart"]);
});

Deno.test("a retry after giving up is one attempt on the ladder's last rung", () => {
  assert.deepEqual(rungsFor(e502, LADDER, true), ["kill"]);
  assert.deepEqual(rungsFor(e502, ["reload", "restart"], true), ["restart"]);
});
