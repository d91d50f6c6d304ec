import assert from "node:assert/strict";
import { configTestErrors, testFpmConfig } from "../../src/fpm/selftest.ts";
import { debianFs, fakeFs, FakeRunner } from "../support/fakes.ts";

/** What Debian 12's php-fpm8.2 -t printed for a pool file that is not a pool file. */
const NOT_A_POOL =
  `[27-Nov-2026 20:03:52] ERROR: [/etc/php/8.2/fpm/pool.d/zz-x.conf:1] value is NULL for a ZEND_INI_PARSER_ENTRY
[27-Nov-2026 20:03:52] ERROR: Unable to include /etc/php/8.2/fpm/pool.d/zz-x.conf from /etc/php/8.2/fpm/php-fpm.conf at line 1
[27-Nov-2026 20:03:52] ERROR: failed to load configuration file '/etc/php/8.2/fpm/php-fpm.conf'
[27-Nov-2026 20:03:52] ERROR: FPM initialization failed
`;

Deno.test("configuration test: the error lines that name the cause, without time stamps", () => {
  assert.deepEqual(configTestErrors(NOT_A_POOL), [
    "[/etc/php/8.2/fpm/pool.d/zz-x.conf:1] value is NULL for a ZEND_INI_PARSER_ENTRY",
    "Unable to include /etc/php/8.2/fpm/pool.d/zz-x.conf from /etc/php/8.2/fpm/php-fpm.conf at line 1",
  ]);
  assert.deepEqual(
    configTestErrors(
      "[27-Nov-2026 20:03:50] NOTICE: configuration file /etc/php/8.2/fpm/php-fpm.conf test is successful\n",
    ),
    [],
  );
});

Deno.test("configuration test: run by absolute path with a timeout; passed, failed, or not run", async () => {
  const calls: string[] = [];
  let answer: { code: number; stderr?: string } | Error = { code: 78, stderr: NOT_A_POOL };
  const runner = new FakeRunner((call) => {
    calls.push(`${call.cmd} ${call.args.join(" ")} (${call.timeoutMs} ms)`);
    return answer;
  });
  const conf = "/etc/php/8.2/fpm/php-fpm.conf";
  const failed = await testFpmConfig("php-fpm8.2", conf, { runner, fs: debianFs() });
  assert.equal(failed?.ok, false);
  assert.equal(failed?.errors.length, 2);
  assert.equal(failed?.command, "/usr/sbin/php-fpm8.2 -t -y /etc/php/8.2/fpm/php-fpm.conf");
  assert.deepEqual(calls, ["/usr/sbin/php-fpm8.2 -t -y /etc/php/8.2/fpm/php-fpm.conf (10000 ms)"]);
  answer = { code: 0 };
  assert.deepEqual(await testFpmConfig("php-fpm8.2", conf, { runner, fs: debianFs() }), {
    ok: true,
    errors: [],
    command: "/usr/sbin/php-fpm8.2 -t -y /etc/php/8.2/fpm/php-fpm.conf",
  });
  answer = { code: 78, stderr: "" };
  assert.deepEqual(
    (await testFpmConfig("php-fpm8.2", conf, { runner, fs: debianFs() }))?.errors,
    ["the test exited 78"],
  );
  answer = new Deno.errors.PermissionDenied("Requires run access");
  assert.equal(
    await testFpmConfig("php-fpm8.2", conf, { runner, fs: debianFs() }),
    null,
    "a test that cannot run says nothing of the configuration",
  );
  assert.equal(await testFpmConfig("php-fpm8.2", null, { runner, fs: debianFs() }), null);
  assert.equal(
    await testFpmConfig("php-fpm8.2", conf, { runner, fs: fakeFs({}) }),
    null,
    "no binary",
  );
});
