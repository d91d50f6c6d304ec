import assert from "node:assert/strict";
import { appendIncident, readIncidents } from "../../src/record/incidents.ts";
import { incidentRecord } from "../support/fixtures.ts";
import { incidentsPath } from "../../src/config/settings.ts";
import { ConfigError } from "../../src/shared/errors.ts";

const record = incidentRecord;

Deno.test("incidents are appended as JSON lines (0600) and read back since a time", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = incidentsPath(`${dir}/state`);
    for (const at of [1000, 2000, 3000]) await appendIncident(path, record(at));
    assert.equal(((await Deno.stat(path)).mode ?? 0) & 0o777, 0o600);
    assert.equal((await Deno.readTextFile(path)).trim().split("\n").length, 3);
    const { incidents, skipped } = await readIncidents(path, 2000);
    assert.deepEqual(incidents.map((i) => i.at), [2000, 3000]);
    assert.equal(skipped, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the log is bounded: past the limit it rotates to .1, and both are read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/incidents.jsonl`;
    const size = new TextEncoder().encode(JSON.stringify(record(1)) + "\n").length;
    for (let at = 1; at <= 5; at++) await appendIncident(path, record(at), size * 2);
    assert.equal((await Deno.readTextFile(path)).trim().split("\n").length, 1);
    assert.equal((await Deno.readTextFile(`${path}.1`)).trim().split("\n").length, 2);
    const { incidents } = await readIncidents(path, 0);
    assert.deepEqual(incidents.map((i) => i.at), [3, 4, 5], "older ones are dropped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a line cut by a crash is skipped, the rest is read; a missing log is empty", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/incidents.jsonl`;
    assert.deepEqual(await readIncidents(path, 0), { incidents: [], skipped: 0, problems: [] });
    await appendIncident(path, record(1));
    await Deno.writeTextFile(path, '{"version":1,"at":2,"ev', { append: true });
    await Deno.writeTextFile(path, "\n" + JSON.stringify(record(3)) + "\n", { append: true });
    const { incidents, skipped } = await readIncidents(path, 0);
    assert.deepEqual(incidents.map((i) => i.at), [1, 3]);
    assert.equal(skipped, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a symbolic link at the log's path is refused, its target untouched", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/victim`, "keep\n");
    await Deno.symlink(`${dir}/victim`, `${dir}/incidents.jsonl`);
    await assert.rejects(() => appendIncident(`${dir}/incidents.jsonl`, record(1)), ConfigError);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
