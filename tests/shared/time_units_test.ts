import assert from "node:assert/strict";
import { seconds } from "../../src/shared/time_units.ts";

Deno.test("time units: seconds below two minutes, whole minutes from then on", () => {
  assert.equal(seconds(0), "0 s");
  assert.equal(seconds(1499), "1 s");
  assert.equal(seconds(1500), "2 s");
  assert.equal(seconds(119_999), "120 s");
  assert.equal(seconds(120_000), "2 min");
  assert.equal(seconds(3_600_000), "60 min");
});
