/** The newest core dump's top frames, from `coredumpctl info` (a fake one: none here). */
import assert from "node:assert/strict";
import { findCoredumpctl, newestCoreFrames, topFrames } from "../../src/fpm/core_dump.ts";
import { fakeFs, FakeRunner } from "../support/fakes.ts";

const INFO = `           PID: 4242 (php-fpm8.2)
           UID: 33 (www-data)
        Signal: 11 (SEGV)
     Timestamp: Thu 2026-12-03 10:00:01 UTC (3s ago)
       Message: Process 4242 (php-fpm8.2) of user 33 dumped core.

                Stack trace of thread 4242:
                #0  0x00007f1c2a4b8e1c kill (libc.so.6 + 0x3be1c)
                #1  0x0000563d1e0c2f11 zif_posix_kill (posix.so + 0x4f11)
                #2  0x0000563d1e3a6d0b execute_ex (php-fpm8.2 + 0x3a6d0b)
                #3  0x0000563d1e3ae9d5 zend_execute (php-fpm8.2 + 0x3ae9d5)
                #4  0x0000563d1e31c9a0 zend_execute_scripts (php-fpm8.2 + 0x31c9a0)
                #5  0x0000563d1e2b6e48 php_execute_script (php-fpm8.2 + 0x2b6e48)
                #6  0x0000563d1e10f4c1 main (php-fpm8.2 + 0x10f4c1)

                Stack trace of thread 4243:
                #0  0x00007f1c2a4b8e1c futex_wait (libc.so.6 + 0x3be1c)
`;

Deno.test("core dump: the crashed thread's top five frames", () => {
  assert.deepEqual(topFrames(INFO), [
    "#0 kill (libc.so.6 + 0x3be1c)",
    "#1 zif_posix_kill (posix.so + 0x4f11)",
    "#2 execute_ex (php-fpm8.2 + 0x3a6d0b)",
    "#3 zend_execute (php-fpm8.2 + 0x3ae9d5)",
    "#4 zend_execute_scripts (php-fpm8.2 + 0x31c9a0)",
  ]);
  assert.deepEqual(topFrames("No coredumps found.\n"), []);
});

Deno.test("core dump: coredumpctl by absolute path, with a deadline, the newest since the crashes", async () => {
  const runner = new FakeRunner(() => ({ stdout: INFO }));
  const frames = await newestCoreFrames(
    runner,
    "/usr/bin/coredumpctl",
    "php-fpm8.2",
    1_764_756_001_900,
  );
  assert.equal(frames.length, 5);
  assert.deepEqual(runner.lines(), [
    "/usr/bin/coredumpctl info --no-pager -1 --since=@1764756001 php-fpm8.2",
  ]);
  assert.ok(runner.calls[0]!.timeoutMs <= 5000);
  for (const r of [{ code: 1, stdout: "" }, { timedOut: true, code: 124, stdout: INFO }]) {
    assert.deepEqual(
      await newestCoreFrames(new FakeRunner(() => r), "/usr/bin/coredumpctl", "php-fpm8.2", 0),
      [],
      JSON.stringify(r),
    );
  }
  assert.deepEqual(
    await newestCoreFrames(
      new FakeRunner(() => new Deno.errors.NotFound("gone")),
      "/usr/bin/coredumpctl",
      "php-fpm8.2",
      0,
    ),
    [],
  );
});

Deno.test("core dump: coredumpctl is optional", async () => {
  assert.equal(await findCoredumpctl(fakeFs({})), null);
  assert.equal(
    await findCoredumpctl(fakeFs({ executables: ["/usr/bin/coredumpctl"] })),
    "/usr/bin/coredumpctl",
  );
});
