/** php-fpm's lines of children that died on a signal, from its error log and from the journal. */
import assert from "node:assert/strict";
import {
  isCrash,
  parseFileDeaths,
  parseJournalDeaths,
  signalLabel,
} from "../../src/fpm/child_deaths.ts";

const local = (y: number, mo: number, d: number, h: number, mi: number, s: number) =>
  new Date(y, mo - 1, d, h, mi, s).getTime();

Deno.test("child deaths: php-fpm 8.2's WARNING lines, by pool, signal and core", () => {
  const deaths = parseFileDeaths([
    "[03-Dec-2026 10:00:01] WARNING: [pool www] child 1234 exited on signal 11 (SIGSEGV - core dumped) after 0.52 seconds from start",
    "[03-Dec-2026 10:00:01] NOTICE: [pool www] child 1240 started",
    "[03-Dec-2026 10:00:02] WARNING: [pool shop.example] child 99 exited on signal 6 (SIGABRT) after 12.000100 seconds from start",
    "[03-Dec-2026 10:00:03] WARNING: [pool www] child 7 exited on signal 9 (SIGKILL) after 1.0 seconds from start",
  ]);
  assert.deepEqual(deaths, [
    {
      at: local(2026, 12, 3, 10, 0, 1),
      pool: "www",
      pid: 1234,
      signal: 11,
      name: "SIGSEGV",
      core: true,
    },
    {
      at: local(2026, 12, 3, 10, 0, 2),
      pool: "shop.example",
      pid: 99,
      signal: 6,
      name: "SIGABRT",
      core: false,
    },
    {
      at: local(2026, 12, 3, 10, 0, 3),
      pool: "www",
      pid: 7,
      signal: 9,
      name: "SIGKILL",
      core: false,
    },
  ]);
});

Deno.test("child deaths: log_level = debug names where php-fpm logged from", () => {
  const [file] = parseFileDeaths([
    "[03-Dec-2026 10:00:01.123456] WARNING: pid 812, fpm_children_bury(), line 256: [pool www] child 1234 exited on signal 11 (SIGSEGV) after 0.52 seconds from start",
  ]);
  assert.equal(file?.pid, 1234);
  assert.equal(file?.at, local(2026, 12, 3, 10, 0, 1) + 123);
  const [journal] = parseJournalDeaths([
    "1764756001.250000 web1 php-fpm[812]: [WARNING] fpm_children_bury(), line 256: [pool www] child 9 exited on signal 11 (SIGSEGV) after 1 seconds from start",
  ]);
  assert.equal(journal?.pid, 9);
});

Deno.test("child deaths: a worker's own words, php-fpm's idle kills and exits are no deaths", () => {
  assert.deepEqual(
    parseFileDeaths([
      // catch_workers_output: what PHP writes comes after php-fpm's own prefix
      '[03-Dec-2026 10:00:01] WARNING: [pool www] child 12 said into stderr: "[03-Dec-2026 10:00:01] WARNING: [pool www] child 1 exited on signal 11 (SIGSEGV) after 1 seconds from start"',
      "[03-Dec-2026 10:00:01] NOTICE: [pool www] child 13 exited on signal 3 (SIGQUIT) after 10.0 seconds from start",
      "[03-Dec-2026 10:00:01] WARNING: [pool www] child 14 exited with code 255 after 1.0 seconds from start",
      "garbage [03-Dec-2026 10:00:01] WARNING: [pool www] child 15 exited on signal 11 (SIGSEGV) after 1 s",
      "[03-Foo-2026 10:00:01] WARNING: [pool www] child 16 exited on signal 11 (SIGSEGV) after 1 s",
      "[03-Dec-2026 10:00:01] WARNING: [pool ../x] child 17 exited on signal 11 (SIGSEGV) after 1 s",
    ]),
    [],
  );
});

Deno.test("child deaths: from the journal, where php-fpm logs to syslog", () => {
  assert.deepEqual(
    parseJournalDeaths([
      "1764756001.250000 web1 php-fpm[812]: [WARNING] [pool www] child 1234 exited on signal 7 (SIGBUS) after 3.1 seconds from start",
      "1764756002.000000 web1 php-fpm[812]: [NOTICE] [pool www] child 1235 started",
    ]),
    [{ at: 1764756001250, pool: "www", pid: 1234, signal: 7, name: "SIGBUS", core: false }],
  );
});

Deno.test("child deaths: crashes are the signals of a process's own fault", () => {
  for (const n of [4, 6, 7, 8, 11, 31]) assert.ok(isCrash(n), String(n));
  // php-fpm's own idle kills, the OOM killer, request_terminate_timeout, a stop
  for (const n of [3, 9, 15, 1]) assert.ok(!isCrash(n), String(n));
  assert.equal(signalLabel("SIGSEGV"), "signal 11 (SIGSEGV)");
  assert.equal(signalLabel("63"), "signal 63");
});
