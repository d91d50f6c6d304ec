import assert from "node:assert/strict";
import { parseSsListen, unixSocketQueue } from "../../src/fpm/socket_queue.ts";
import { FakeRunner } from "../support/fakes.ts";

/** What Debian 12's `ss -xlH` printed with php8.2-fpm and two test pools listening. */
const SS = `u_str LISTEN 0      4096   /run/php/php8.2-fpm.sock 360184 * 0
u_str LISTEN 7      511    /run/php/php-relaunch-test.sock 360190 * 0
u_str LISTEN 0      4096   /run/systemd/private 1234 * 0
`;

Deno.test("ss: the waiting connections and the backlog of one listening socket", () => {
  assert.deepEqual(parseSsListen(SS, "/run/php/php-relaunch-test.sock"), {
    queued: 7,
    backlog: 511,
  });
  assert.deepEqual(parseSsListen(SS, "/run/php/php8.2-fpm.sock"), { queued: 0, backlog: 4096 });
  assert.equal(parseSsListen(SS, "/run/php/php8.2-fpm"), null, "the whole path, not a prefix");
  assert.equal(parseSsListen("u_str LISTEN x 4096 /a.sock 1 * 0", "/a.sock"), null);
  assert.equal(parseSsListen("", "/a.sock"), null);
});

Deno.test("ss: run by absolute path with an argument array and a timeout; a failure is no figure", async () => {
  const calls: string[] = [];
  let answer: { code: number; stdout?: string } | Error = { code: 0, stdout: SS };
  const runner = new FakeRunner((call) => {
    calls.push(`${call.cmd} ${JSON.stringify(call.args)} ${call.timeoutMs}`);
    return answer;
  });
  const path = "/run/php/php-relaunch-test.sock";
  assert.deepEqual(await unixSocketQueue("/usr/bin/ss", path, runner), { queued: 7, backlog: 511 });
  assert.deepEqual(calls, [`/usr/bin/ss ["-xlH","src","${path}"] 2000`]);
  answer = { code: 1 };
  assert.equal(await unixSocketQueue("/usr/bin/ss", path, runner), null);
  answer = new Error("timed out");
  assert.equal(await unixSocketQueue("/usr/bin/ss", path, runner), null);
});
