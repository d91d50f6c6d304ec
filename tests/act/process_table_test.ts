import assert from "node:assert/strict";
import { certainty } from "../../src/act/process_table.ts";
import { DEBIAN_TOOLS, FakeRunner } from "../support/fakes.ts";

const TOOLS = DEBIAN_TOOLS;

/** A runner whose `ps -e` prints `rows` ("pid pgid stat comm"), or fails with `code`. */
function table(rows: string[], code = 0) {
  return new FakeRunner((call) => {
    assert.deepEqual(call.args, ["-e", "-o", "pid=,pgid=,stat=,comm="]);
    assert.equal(call.cmd, "/usr/bin/ps");
    return { code, stdout: rows.map((r) => `  ${r}`).join("\n") };
  });
}

const POOL = ["100 100 Ss php-fpm8.2", "101 100 S php-fpm8.2", "102 100 S php-fpm8.2"];
const OTHER = ["1 1 Ss init", "500 500 Ss nginx", "501 500 S nginx"];

Deno.test("certain crash: the pid file's master gone or a zombie, and no other master of the name", async () => {
  const crash = (rows: string[]) => certainty(table(rows), TOOLS, "php-fpm8.2", 100, "crash");
  assert.equal(await crash([...OTHER, ...POOL]), null, "alive: a 5xx is confirmed as usual");
  assert.deepEqual(await crash(OTHER), {
    kind: "crash",
    why: "master 100 is gone and no other php-fpm8.2 master runs",
  });
  assert.match((await crash([...OTHER, "100 100 Z php-fpm8.2"]))!.why, /master 100 is a zombie/);
  // orphaned workers do not make a master
  assert.ok(await crash([...OTHER, "101 100 S php-fpm8.2"]));
  // the pid reused by another program
  assert.ok(await crash(["100 100 Ss bash", ...OTHER]));
  // started again by someone else (a deploy, systemd's Restart=): not ours to restart at once
  assert.equal(await crash([...OTHER, "200 200 Ss php-fpm8.2", "201 200 S php-fpm8.2"]), null);
  // another version's master does not count
  assert.ok(await crash([...OTHER, "300 300 Ss php-fpm7.4"]));
});

Deno.test("certain hang: every process of the master's group stopped", async () => {
  const hang = (rows: string[]) => certainty(table(rows), TOOLS, "php-fpm8.2", 100, "hang");
  const stopped = POOL.map((r) => r.replace(/ S+s? /, " T "));
  assert.deepEqual(await hang([...OTHER, ...stopped]), {
    kind: "hang",
    why: "all 3 php-fpm8.2 processes of master 100 are stopped",
  });
  assert.equal(await hang([...OTHER, ...stopped.slice(0, 2), POOL[2]!]), null, "one still runs");
  assert.equal(await hang(OTHER), null, "no pool: not a hang");
});

Deno.test("nothing is certain without a pid file or a process table", async () => {
  assert.equal(await certainty(table(OTHER), TOOLS, "php-fpm8.2", null, "crash"), null);
  assert.equal(await certainty(table([], 1), TOOLS, "php-fpm8.2", 100, "crash"), null);
  const throwing = new FakeRunner(() => new Deno.errors.NotFound("ps"));
  assert.equal(await certainty(throwing, TOOLS, "php-fpm8.2", 100, "crash"), null);
});
