import assert from "node:assert/strict";
import { findOomKills, parseOomKills, poolKills } from "../../src/fpm/oom.ts";
import { humanKb } from "../../src/shared/memory_units.ts";
import { fakeFs, FakeRunner } from "../support/fakes.ts";

const T = Date.parse("2026-11-27T20:03:52Z");
const OWNER = { service: "php8.2-fpm", masters: [48000] };

/**
 * Kernel lines as Debian 12's kernel writes them (journal short-iso, rsyslog's kern.log and
 * dmesg --time-format iso), around an OOM kill of a php-fpm worker and of another program.
 */
const JOURNAL =
  `2026-11-27T20:03:51+0000 web1 kernel: php-fpm8.2 invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0
2026-11-27T20:03:51+0000 web1 kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/php8.2-fpm.service,task_memcg=/system.slice/php8.2-fpm.service,task=php-fpm8.2,pid=48213,uid=33
2026-11-27T20:03:52+0000 web1 kernel: Memory cgroup out of memory: Killed process 48213 (php-fpm8.2) total-vm:2271044kB, anon-rss:1987360kB, file-rss:13376kB, shmem-rss:1024kB, UID:33 pgtables:4052kB oom_score_adj:0
2026-11-27T20:03:55+0000 web1 kernel: Out of memory: Killed process 51000 (mysqld) total-vm:4000000kB, anon-rss:3000000kB, file-rss:0kB, shmem-rss:0kB, UID:106 pgtables:6000kB oom_score_adj:0
2026-11-27T19:50:00+0000 web1 kernel: Out of memory: Killed process 47000 (php-fpm8.2) total-vm:900000kB, anon-rss:800000kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:2000kB oom_score_adj:0
`;
const KERN_LOG =
  `2026-11-27T20:03:52.123456+00:00 web1 kernel: [81234.567890] Out of memory: Killed process 48214 (php-fpm8.2) total-vm:524288kB, anon-rss:400000kB, file-rss:12000kB, shmem-rss:0kB, UID:33 pgtables:1000kB oom_score_adj:0
`;

Deno.test("OOM kills: the pool's processes, since the incident, with their resident memory", () => {
  assert.deepEqual(parseOomKills(JOURNAL, "php-fpm8.2", T - 60_000), [
    {
      pid: 48213,
      rssKb: 1987360 + 13376 + 1024,
      at: T,
      memcg: "/system.slice/php8.2-fpm.service",
    },
  ]);
  assert.deepEqual(parseOomKills(KERN_LOG, "php-fpm8.2", T - 60_000), [
    { pid: 48214, rssKb: 412000, at: Date.parse("2026-11-27T20:03:52.123Z"), memcg: null },
  ]);
  assert.deepEqual(parseOomKills(JOURNAL, "php-fpm7.4", 0), [], "another version's pool");
  assert.equal(humanKb(2001760), "1.9 GiB");
  // syslog's traditional time has no year: the one that puts it before now
  const traditional = [
    "Nov 27 20:03:52 web1 kernel: [81234.5] Out of memory: Killed process 7 (php-fpm8.2) total-vm:1kB, anon-rss:1024kB, file-rss:0kB, shmem-rss:0kB",
    "Nov 20 09:00:00 web1 kernel: [1234.5] Out of memory: Killed process 6 (php-fpm8.2) total-vm:1kB, anon-rss:1024kB, file-rss:0kB, shmem-rss:0kB",
  ].join("\n");
  assert.deepEqual(
    parseOomKills(traditional, "php-fpm8.2", T - 60_000, T + 5000).map((k) => [k.pid, k.at]),
    [[7, T]],
    "last week's kill is not this incident's",
  );
  const newYear = Date.parse("2027-01-01T00:00:10Z");
  assert.deepEqual(
    parseOomKills(
      "Dec 31 23:59:50 h kernel: Out of memory: Killed process 5 (php-fpm8.2) anon-rss:1kB",
      "php-fpm8.2",
      newYear - 60_000,
      newYear,
    )
      .map((k) => k.at),
    [Date.parse("2026-12-31T23:59:50Z")],
  );
  assert.equal(humanKb(412000), "402 MiB");
});

/** dmesg on a host with two php8.2-fpm masters, each in a memory cgroup of its own (not systemd). */
const TWO_MASTERS = [
  "2026-11-27T20:03:50,100000+00:00 oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/site-a,task_memcg=/site-a,task=php-fpm8.2,pid=700,uid=0",
  "2026-11-27T20:03:50,100002+00:00 Memory cgroup out of memory: Killed process 700 (php-fpm8.2) total-vm:201600kB, anon-rss:4052kB, file-rss:2260kB, shmem-rss:0kB, UID:0 pgtables:92kB oom_score_adj:1000",
  "2026-11-27T20:03:50,200000+00:00 oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/site-a,task_memcg=/site-a,task=php-fpm8.2,pid=701,uid=33",
  "2026-11-27T20:03:50,200002+00:00 Memory cgroup out of memory: Killed process 701 (php-fpm8.2) total-vm:259292kB, anon-rss:53860kB, file-rss:6388kB, shmem-rss:272kB, UID:33 pgtables:252kB oom_score_adj:0",
  "2026-11-27T20:03:51,000000+00:00 oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/site-b,task_memcg=/site-b,task=php-fpm8.2,pid=801,uid=33",
  "2026-11-27T20:03:51,000002+00:00 Memory cgroup out of memory: Killed process 801 (php-fpm8.2) total-vm:259292kB, anon-rss:53860kB, file-rss:6388kB, shmem-rss:272kB, UID:33 pgtables:252kB oom_score_adj:0",
  "2026-11-27T20:03:51,500000+00:00 oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=php-fpm8.2,pid=900,uid=33",
  "2026-11-27T20:03:51,500002+00:00 Out of memory: Killed process 900 (php-fpm8.2) total-vm:259292kB, anon-rss:53860kB, file-rss:6388kB, shmem-rss:272kB, UID:33 pgtables:252kB oom_score_adj:0",
].join("\n");

Deno.test("OOM kills: another master's of the same binary are not the pool's", () => {
  const kills = parseOomKills(TWO_MASTERS, "php-fpm8.2", T - 60_000);
  assert.deepEqual(kills.map((k) => [k.pid, k.memcg]), [
    [700, "/site-a"],
    [701, "/site-a"],
    [801, "/site-b"],
    [900, "/"],
  ]);
  // site a's master was 700: its worker in the same cgroup is its too; site b's is not; a kill
  // when the whole host ran short counts by the name alone
  const a = poolKills(kills, { service: "php8.2-fpm-a", masters: [700] });
  assert.deepEqual(a.map((k) => k.pid), [700, 701, 900]);
  assert.deepEqual(a[0], {
    pid: 700,
    rssKb: 4052 + 2260,
    at: Date.parse("2026-11-27T20:03:50.100Z"),
  });
  // a master crashed otherwise (SIGKILL, SIGSEGV): the other cgroups' kills are not its
  const c = poolKills(kills, { service: "php8.2-fpm-c", masters: [600] });
  assert.deepEqual(c.map((k) => k.pid), [900]);
  // under systemd the service's unit is its cgroup
  const unit = parseOomKills(JOURNAL, "php-fpm8.2", T - 60_000);
  assert.deepEqual(poolKills(unit, OWNER).map((k) => k.pid), [48213]);
  assert.deepEqual(poolKills(unit, { service: "php8.2-fpm-b", masters: [1] }), []);
});

Deno.test("OOM kills: the journal where systemd runs, else kern.log's end, else dmesg", async () => {
  const clock = { now: () => T + 5000 };
  const calls: string[] = [];
  const runner = new FakeRunner((call) => {
    calls.push([call.cmd, ...call.args].join(" "));
    // a long-lived host's kernel log is large: its end, where the newest lines are, is kept
    assert.equal(call.tailBytes, 512 * 1024);
    return { code: 0, stdout: call.cmd.endsWith("journalctl") ? JOURNAL : KERN_LOG };
  });
  const tools = { journalctl: "/usr/bin/journalctl", dmesg: "/usr/bin/dmesg" };
  const none = fakeFs({});
  const fromJournal = await findOomKills("php-fpm8.2", OWNER, T - 60_000, tools, {
    runner,
    fs: none,
    clock,
  });
  assert.deepEqual(fromJournal.map((k) => k.pid), [48213]);
  assert.deepEqual(calls, [
    `/usr/bin/journalctl -k --since @${(T - 60_000) / 1000} -o short-iso --no-pager -q`,
  ]);
  calls.length = 0;
  const kern = fakeFs({ files: { "/var/log/kern.log": KERN_LOG } });
  const noJournal = { journalctl: null, dmesg: "/usr/bin/dmesg" };
  assert.deepEqual(
    (await findOomKills("php-fpm8.2", OWNER, T - 60_000, noJournal, { runner, fs: kern, clock }))
      .map((
        k,
      ) => k.pid),
    [48214],
  );
  assert.deepEqual(calls, [], "kern.log read, dmesg not run");
  assert.deepEqual(
    (await findOomKills("php-fpm8.2", OWNER, T - 60_000, noJournal, { runner, fs: none, clock }))
      .map((
        k,
      ) => k.pid),
    [48214],
  );
  assert.deepEqual(calls, ["/usr/bin/dmesg --time-format iso"]);
  const failing = new FakeRunner(() => new Error("not allowed"));
  assert.deepEqual(
    await findOomKills("php-fpm8.2", OWNER, 0, tools, { runner: failing, fs: none, clock }),
    [],
    "no kernel log: no finding, no error",
  );
});
