import assert from "node:assert/strict";
import { DEFAULT_RELAUNCH, relaunch, type RelaunchTarget } from "../../src/act/restart.ts";
import type { Tools } from "../../src/act/service.ts";
import { captureLogs, DEBIAN_TOOLS, FakeClock, fakeFs, FakeRunner } from "../support/fakes.ts";
import { FpmHost, masterTitle, STARTED_AT } from "../support/fpm_host.ts";

const tools: Tools = { ...DEBIAN_TOOLS, systemctl: "/usr/bin/systemctl" };
const CONFIG = "/etc/php/8.2/fpm/php-fpm.conf";
/** The positional form's target: the kill rung only, no master seen before. */
const fpm: RelaunchTarget = {
  service: "php8.2-fpm",
  processName: "php-fpm8.2",
  fpmConfig: CONFIG,
  pidFile: "/run/php/php8.2-fpm.pid",
  knownMaster: null,
  rungs: ["kill"],
};

/** A relaunch's context on a fake host; `removed` records the names the relaunch removed. */
const ctx = (runner: FakeRunner, init: "sysv" | "systemd" = "sysv") => {
  const removed: string[] = [];
  return { init, tools, runner, clock: new FakeClock(), fs: fakeFs({ removed }), removed };
};

/** The commands that act (not ps and systemctl show, which only look). */
const acts = (runner: FakeRunner) =>
  runner.lines().filter((l) => !/\/ps |\/systemctl show /.test(l));

Deno.test("sysv: SIGKILL to the master's pool by pid, then `service NAME start`, verified by ps and a probe", async () => {
  captureLogs();
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  const runner = host.runner();
  let probes = 0;
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(++probes > 0));
  assert.equal(report.ok, true);
  assert.equal(report.attempts, 1);
  assert.equal(report.killed, 3);
  assert.equal(probes, 1);
  assert.deepEqual(acts(runner), [
    `/usr/bin/kill -KILL ${master} ${master + 1} ${master + 2}`,
    "/usr/sbin/service php8.2-fpm start",
  ]);
  assert.ok(host.master("php8.2-fpm")!.pid > master + 2, "a new master runs");
  for (const c of runner.calls) assert.ok(c.timeoutMs > 0, "every command has a timeout");
});

Deno.test("nothing running: nothing killed, straight to start", async () => {
  captureLogs();
  const host = new FpmHost();
  const runner = host.runner();
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  assert.equal(report.ok, true);
  assert.equal(report.killed, 0);
  assert.deepEqual(acts(runner), ["/usr/sbin/service php8.2-fpm start"]);
});

Deno.test("the kill rung never selects by name: another instance, another user's look-alikes and the pid file's word are spared", async () => {
  captureLogs();
  const host = new FpmHost();
  const ours = host.up("php8.2-fpm", "T");
  // a second instance of the same binary, with a configuration of its own
  const other = host.add({
    name: "php-fpm8.2",
    title: masterTitle("/etc/php/8.2/fpm-b/php-fpm.conf"),
  });
  const otherWorker = host.add({
    name: "php-fpm8.2",
    title: "php-fpm: pool b",
    ppid: other.pid,
    pgid: other.pid,
    ruid: 33,
    euid: 33,
  });
  // www-data's fake master: its own group, the init system's child, the master's very title
  const fake = host.add({ name: "php-fpm8.2", title: masterTitle(CONFIG), ruid: 33, euid: 33 });
  // a setuid program started by www-data under the name: root's effective uid, not its real one
  const setuid = host.add({ name: "php-fpm8.2", title: masterTitle(CONFIG), ruid: 33, euid: 0 });
  const runner = host.runner();
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  assert.equal(report.ok, true);
  assert.equal(report.killed, 3);
  assert.deepEqual(acts(runner)[0], `/usr/bin/kill -KILL ${ours} ${ours + 1} ${ours + 2}`);
  const alive = host.alive("php-fpm8.2");
  for (const pid of [other.pid, otherWorker.pid, fake.pid, setuid.pid]) {
    assert.ok(alive.includes(pid), `${pid} was spared`);
  }
  assert.ok(!acts(runner).some((l) => / -x /.test(l)), "no command selects by name");
});

Deno.test("a crashed master: its orphaned workers are killed by the group it led, as last seen", async () => {
  captureLogs();
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  host.procs = host.procs.filter((p) => p.pid !== master);
  for (const p of host.procs) p.ppid = 1;
  const other = host.up("php7.4-fpm");
  const runner = host.runner();
  const report = await relaunch(
    { ...fpm, knownMaster: master },
    ctx(runner),
    () => Promise.resolve(true),
  );
  assert.equal(report.killed, 2);
  assert.equal(acts(runner)[0], `/usr/bin/kill -KILL ${master + 1} ${master + 2}`);
  assert.ok(host.alive("php-fpm7.4").includes(other), "another version untouched");
});

Deno.test("the last master's pid reused by another php-fpm master: nothing of it is killed", async () => {
  captureLogs();
  const host = new FpmHost();
  // the pid our master had now leads another instance's pool
  const reused = host.add({
    name: "php-fpm8.2",
    title: masterTitle("/etc/php/8.2/fpm-b/php-fpm.conf"),
  });
  host.add({ name: "php-fpm8.2", title: "php-fpm: pool b", ppid: reused.pid, pgid: reused.pid });
  const runner = host.runner();
  const report = await relaunch(
    { ...fpm, knownMaster: reused.pid },
    ctx(runner),
    () => Promise.resolve(true),
  );
  assert.equal(report.killed, 0);
  assert.equal(host.alive("php-fpm8.2").length >= 2, true);
  assert.ok(!acts(runner).some((l) => l.includes("-KILL")));
});

Deno.test("retries about 2 s apart until the service comes up", async () => {
  captureLogs();
  const host = new FpmHost();
  host.startsToComeUp = 3;
  const c = ctx(host.runner());
  const report = await relaunch(fpm, c, () => Promise.resolve(true));
  assert.equal(report.ok, true);
  assert.equal(report.attempts, 3);
  assert.equal(c.runner.lines().filter((l) => l.endsWith("start")).length, 3);
  assert.deepEqual(c.clock.sleeps.filter((ms) => ms === 2000).length, 2);
});

Deno.test("a probe that stays bad means another attempt, up to 10, then failure", async () => {
  captureLogs();
  const host = new FpmHost();
  host.up("php8.2-fpm");
  let probes = 0;
  const c = ctx(host.runner());
  const report = await relaunch(fpm, c, () => {
    probes++;
    return Promise.resolve(false);
  });
  assert.equal(report.ok, false);
  assert.equal(report.attempts, DEFAULT_RELAUNCH.maxAttempts);
  assert.equal(probes, 10);
  assert.match(report.reason, /runs but the heartbeat is still failing/);
  assert.deepEqual(c.removed, ["/run/php/php8.2-fpm.pid"], "the new master's pid file is kept");
});

Deno.test("never comes up: 10 attempts and a reason naming the start command", async () => {
  captureLogs();
  const host = new FpmHost();
  host.startsToComeUp = Infinity;
  const report = await relaunch(fpm, ctx(host.runner()), () => Promise.resolve(true));
  assert.equal(report.ok, false);
  assert.equal(report.attempts, 10);
  assert.match(
    report.reason,
    /no php-fpm8\.2 master after \/usr\/sbin\/service php8\.2-fpm start/,
  );
});

Deno.test("a deadline (a cron run's period): no attempt or rung begins that could end after it", async () => {
  captureLogs();
  const host = new FpmHost();
  host.startsToComeUp = Infinity;
  const c = ctx(host.runner());
  // 10 s start timeout, attempts 2 s apart: the first at 0, the second at 2 s, none after 5 s
  const options = { ...DEFAULT_RELAUNCH, startTimeoutMs: 10_000, deadline: c.clock.now() + 15_000 };
  const report = await relaunch(fpm, { ...c, options }, () => Promise.resolve(true));
  assert.equal(report.ok, false);
  assert.equal(report.attempts, 3);
  assert.match(
    report.reason,
    /no time left in this run for another attempt \(the next run goes on\)$/,
  );

  const h = ladderHost("S", "restart");
  const c2 = ctx(h.runner);
  const late = { ...quick, deadline: c2.clock.now() + quick.startTimeoutMs + 100 };
  const laddered = await relaunch(ladder(h.master), { ...c2, options: late }, h.verify);
  assert.equal(laddered.rung, "reload", "the restart rung was not begun");
  assert.match(laddered.steps.at(-1)!, /^restart: not begun: no time left in this run/);
});

Deno.test("zombies do not count as running: a killed master its parent has not reaped yet", async () => {
  captureLogs();
  const host = new FpmHost();
  host.zombies = true;
  host.startsToComeUp = Infinity;
  const master = host.up("php8.2-fpm");
  const runner = host.runner();
  const report = await relaunch(fpm, {
    ...ctx(runner),
    options: { ...DEFAULT_RELAUNCH, maxAttempts: 2 },
  }, () => Promise.resolve(true));
  assert.equal(
    runner.lines().filter((l) => l.includes("-KILL")).length,
    1,
    "one SIGKILL was enough",
  );
  assert.equal(host.procs.find((p) => p.pid === master)?.stat, "Z");
  assert.equal(report.ok, false, "a zombie is not a running php-fpm");
  assert.match(report.reason, /no php-fpm8\.2 master/);
});

Deno.test("processes that survive SIGKILL: bounded rounds, then start anyway", async () => {
  const logs = captureLogs();
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  host.unkillable.add(master + 1);
  const runner = host.runner();
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  const kills = runner.lines().filter((l) => l.includes("-KILL"));
  assert.equal(kills.length, 10);
  assert.equal(kills.at(-1), `/usr/bin/kill -KILL ${master + 1}`, "only the survivor again");
  assert.equal(report.ok, true);
  assert.ok(logs.lines().some((l) => /1 php-fpm8\.2 processes survived SIGKILL/.test(l)));
});

Deno.test("a command that cannot run ends the relaunch with its reason, no retries", async () => {
  captureLogs();
  const host = new FpmHost();
  host.up("php8.2-fpm");
  const runner = host.runner((call) =>
    call.cmd.endsWith("/kill") ? new Deno.errors.NotFound("Failed to spawn 'kill'") : undefined
  );
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  assert.equal(report.ok, false);
  assert.match(report.reason, /Failed to spawn/);
  assert.ok(!runner.lines().some((l) => l.endsWith(" start")));
});

Deno.test("no process table (ps does not answer): nothing is killed nor started, nor stopped and started", async () => {
  captureLogs();
  const host = new FpmHost();
  host.up("php8.2-fpm");
  const runner = host.runner((call) =>
    call.cmd.endsWith("/ps") ? { code: 143, timedOut: true } : undefined
  );
  // not knowing what runs, a start could make a second master beside the first
  const report = await relaunch(
    { ...fpm, knownMaster: 1000, rungs: ["restart", "kill"] },
    ctx(runner),
    () => Promise.resolve(true),
  );
  assert.equal(report.ok, false);
  assert.deepEqual(acts(runner), []);
  assert.deepEqual(report.steps, [
    "restart: skipped (the process table cannot be read (ps did not answer in time))",
    "kill: the process table cannot be read (ps did not answer in time): nothing killed or started (still failing)",
  ]);
});

Deno.test("php-cgi, which has no master, is killed by its name as the original did", async () => {
  captureLogs();
  const host = new FpmHost();
  host.up("php8.2-cgi");
  const runner = host.runner();
  const report = await relaunch(
    {
      service: "php8.2-cgi",
      processName: "php-cgi8.2",
      fpmConfig: null,
      pidFile: null,
      knownMaster: null,
      rungs: ["kill"],
      byName: true,
    },
    ctx(runner),
    () => Promise.resolve(true),
  );
  assert.equal(report.ok, true);
  assert.equal(report.killed, 2);
  assert.deepEqual(acts(runner), [
    "/usr/bin/kill -KILL 1000 1001",
    "/usr/sbin/service php8.2-cgi start",
  ]);
});

/**
 * A pool whose master is in `state` (or gone: null); heals on `healsOn`: the reload's SIGUSR2,
 * the restart rung's start (before any SIGKILL), or any start.
 */
function ladderHost(state: "S" | "T" | null, healsOn: "reload" | "restart" | "start") {
  const host = new FpmHost();
  const master = host.up("php8.2-fpm", state ?? "S");
  if (state === null) host.procs = host.procs.filter((p) => p.pid !== master);
  let healthy = false;
  let killed = false;
  const runner = host.runner((call) => {
    const line = [call.cmd, ...call.args].join(" ");
    if (line.includes("-KILL")) killed = true;
    if (line.includes("-USR2")) healthy ||= healsOn === "reload";
    const starts = line.endsWith(" start") || line.endsWith(" restart");
    if (starts) healthy ||= healsOn === "start" || (healsOn === "restart" && !killed);
    return undefined;
  });
  return { host, master, runner, verify: () => Promise.resolve(healthy) };
}

const ladder = (master: number): RelaunchTarget => ({
  ...fpm,
  knownMaster: master,
  rungs: ["reload", "restart", "kill"],
});
const quick = { ...DEFAULT_RELAUNCH, startTimeoutMs: 2000, verifyEveryMs: 500 };

Deno.test("ladder: a graceful reload (SIGUSR2 to the master, by pid) is tried first", async () => {
  captureLogs();
  const h = ladderHost("S", "reload");
  const report = await relaunch(ladder(h.master), { ...ctx(h.runner), options: quick }, h.verify);
  assert.equal(report.ok, true);
  assert.equal(report.rung, "reload");
  assert.deepEqual(acts(h.runner), [`/usr/bin/kill -USR2 ${h.master}`]);
});

Deno.test("ladder: a reload that does not help within start_timeout leads to restart", async () => {
  captureLogs();
  const h = ladderHost("S", "restart");
  const c = { ...ctx(h.runner), options: quick };
  const report = await relaunch(ladder(h.master), c, h.verify);
  assert.equal(report.rung, "restart");
  // the init script's stop would signal whatever the pid file names: the master is stopped by
  // pid, the pid file cleared, and the init script only starts php-fpm
  assert.deepEqual(acts(h.runner), [
    `/usr/bin/kill -USR2 ${h.master}`,
    `/usr/bin/kill -QUIT ${h.master}`,
    "/usr/sbin/service php8.2-fpm start",
  ]);
  assert.deepEqual(c.removed, ["/run/php/php8.2-fpm.pid"]);
  assert.equal(report.steps[0], `reload: SIGUSR2 to master ${h.master} (still failing)`);
  assert.equal(
    report.steps[1],
    `restart: SIGQUIT to master ${h.master}; /usr/sbin/service php8.2-fpm start exited 0`,
  );
  assert.ok(c.clock.sleeps.filter((ms) => ms === 500).length >= 3, "re-probed until the timeout");
});

Deno.test("ladder: under systemd, restart is systemd's, which knows the unit's main process", async () => {
  captureLogs();
  const h = ladderHost("S", "restart");
  const c = { ...ctx(h.runner, "systemd"), options: quick };
  const report = await relaunch({ ...ladder(h.master), rungs: ["restart"] }, c, h.verify);
  assert.equal(report.rung, "restart");
  assert.deepEqual(acts(h.runner), [
    "/usr/bin/systemctl reset-failed php8.2-fpm",
    "/usr/bin/systemctl restart php8.2-fpm",
  ]);
  assert.deepEqual(c.removed, [], "systemd needs no pid file");
});

Deno.test("the kill rung clears the pid file before each start of an init script, never under systemd", async () => {
  captureLogs();
  const host = new FpmHost();
  host.up("php8.2-fpm");
  host.startsToComeUp = 2;
  const c = ctx(host.runner());
  await relaunch(fpm, c, () => Promise.resolve(true));
  assert.deepEqual(c.removed, ["/run/php/php8.2-fpm.pid", "/run/php/php8.2-fpm.pid"]);
  const d = ctx(new FpmHost().runner(), "systemd");
  await relaunch(fpm, d, () => Promise.resolve(true));
  assert.deepEqual(d.removed, []);
});

Deno.test("ladder: a stopped (SIGSTOP) master skips the gentle rungs; only its own pool is killed", async () => {
  captureLogs();
  const h = ladderHost("T", "start");
  const other = h.host.up("php7.4-fpm");
  const report = await relaunch(ladder(h.master), { ...ctx(h.runner), options: quick }, h.verify);
  assert.equal(report.ok, true);
  assert.equal(report.rung, "kill");
  const lines = acts(h.runner);
  assert.ok(!lines.some((l) => l.includes("USR2") || l.endsWith("restart")), lines.join("\n"));
  assert.equal(lines[0], `/usr/bin/kill -KILL ${h.master} ${h.master + 1} ${h.master + 2}`);
  assert.ok(h.host.alive("php-fpm7.4").includes(other));
});

Deno.test("ladder: a dead master (crash) skips reload and restarts through the init system", async () => {
  captureLogs();
  const h = ladderHost(null, "restart");
  const report = await relaunch(ladder(h.master), { ...ctx(h.runner), options: quick }, h.verify);
  assert.equal(report.rung, "restart");
  assert.deepEqual(report.steps[0], "reload: skipped (master gone or stopped)");
  assert.deepEqual(acts(h.runner), ["/usr/sbin/service php8.2-fpm start"], "nothing to stop");
});

Deno.test("ladder: under systemd the unit's MainPID names the master", async () => {
  captureLogs();
  const h = ladderHost("S", "reload");
  const report = await relaunch(
    ladder(h.master),
    { ...ctx(h.runner, "systemd"), options: quick },
    h.verify,
  );
  assert.equal(report.rung, "reload");
  assert.ok(
    h.runner.lines().includes("/usr/bin/systemctl show --property MainPID --value php8.2-fpm"),
  );
  assert.deepEqual(acts(h.runner), [`/usr/bin/kill -USR2 ${h.master}`]);
});

/**
 * A pool whose workers master+1 and master+2 are stuck, as the status page said; healthy once
 * the stuck ones are killed when `killHeals`.
 */
function stuckHost(killHeals: boolean) {
  const h = ladderHost("S", "reload");
  let healthy = false;
  const runner = h.host.runner((call) => {
    const line = [call.cmd, ...call.args].join(" ");
    if (line.includes("-KILL")) healthy ||= killHeals;
    if (line.includes("-USR2")) healthy = true;
    return undefined;
  });
  const started = (pid: number) => h.host.procs.find((p) => p.pid === pid)!.startedAt;
  const stuck = [h.master + 1, h.master + 2].map((pid) => ({
    pid,
    pool: "www",
    startedAt: started(pid),
  }));
  return { ...h, runner, stuck, verify: () => Promise.resolve(healthy) };
}

const withStuck = (h: ReturnType<typeof stuckHost>): RelaunchTarget => ({
  ...ladder(h.master),
  rungs: ["kill_stuck", "reload", "restart", "kill"],
  stuck: h.stuck,
});

Deno.test("kill_stuck: only the stuck workers still in this pool get SIGKILL; the master stays", async () => {
  captureLogs();
  const h = stuckHost(true);
  const report = await relaunch(withStuck(h), { ...ctx(h.runner), options: quick }, h.verify);
  assert.equal(report.ok, true);
  assert.equal(report.rung, "kill_stuck");
  assert.equal(report.killed, 2);
  assert.deepEqual(acts(h.runner), [`/usr/bin/kill -KILL ${h.master + 1} ${h.master + 2}`]);
  assert.deepEqual(report.steps, [
    `kill_stuck: SIGKILL to stuck workers ${h.master + 1}, ${h.master + 2}`,
  ]);
});

Deno.test("kill_stuck: each pid is checked just before: another pool's, another master's, a reused pid, the master itself are spared", async () => {
  captureLogs();
  const h = stuckHost(true);
  const m = h.master;
  const otherMaster = h.host.up("php7.4-fpm");
  // the same master's other pool
  const shop = h.host.add({ name: "php-fpm8.2", title: "php-fpm: pool shop", ppid: m, pgid: m });
  const now = STARTED_AT + 100_000;
  const forged = [
    { pid: m, pool: "www", startedAt: 0 },
    { pid: shop.pid, pool: "www", startedAt: 0 },
    { pid: otherMaster + 1, pool: "www", startedAt: 0 },
    // the status page saw a worker that started an hour ago; this pid started 100 s ago
    { pid: m + 1, pool: "www", startedAt: now - 3_600_000 },
    { pid: 4242, pool: "www", startedAt: 0 },
  ];
  const report = await relaunch(
    { ...withStuck(h), stuck: forged },
    { ...ctx(h.runner), options: quick },
    h.verify,
  );
  assert.equal(
    report.steps[0],
    "kill_stuck: skipped (none of the stuck workers is still this master's)",
  );
  assert.ok(!acts(h.runner).some((l) => l.includes("-KILL")), acts(h.runner).join("\n"));
});

Deno.test("kill_stuck: when killing them does not help soon, the next rung acts", async () => {
  captureLogs();
  const h = stuckHost(false);
  const c = { ...ctx(h.runner), options: { ...quick, startTimeoutMs: 30_000 } };
  const report = await relaunch(withStuck(h), c, h.verify);
  assert.equal(report.rung, "reload");
  assert.equal(
    report.steps[0],
    `kill_stuck: SIGKILL to stuck workers ${h.master + 1}, ${h.master + 2} (still failing)`,
  );
  // not the full start_timeout: new workers answer at once, or not at all
  const waited = c.clock.sleeps.slice(0, 10).filter((ms) => ms === 500).length;
  assert.ok(waited <= 6, `waited ${waited} verify rounds`);
});

Deno.test("kill_stuck: skipped without stuck workers (no status page) or without a master", async () => {
  captureLogs();
  const h = stuckHost(true);
  const none = await relaunch(
    { ...withStuck(h), stuck: [] },
    { ...ctx(h.runner), options: quick },
    h.verify,
  );
  assert.equal(none.rung, "reload");
  assert.equal(none.steps[0], "kill_stuck: skipped (no stuck worker known)");
  const h2 = stuckHost(true);
  h2.host.procs = h2.host.procs.filter((p) => p.pid !== h2.master);
  const noMaster = await relaunch(withStuck(h2), { ...ctx(h2.runner), options: quick }, h2.verify);
  assert.equal(noMaster.steps[0], "kill_stuck: skipped (no master of this service found)");
});

Deno.test("kill_stuck: a status page with no idle worker after the kill moves on within a second", async () => {
  captureLogs();
  const h = stuckHost(false);
  const c = { ...ctx(h.runner), options: { ...quick, startTimeoutMs: 30_000 } };
  let probes = 0;
  const report = await relaunch(
    { ...withStuck(h), poolHasRoom: () => Promise.resolve(false) },
    c,
    () => {
      probes++;
      return h.verify();
    },
  );
  assert.equal(report.rung, "reload");
  assert.match(report.steps[0]!, /queued requests took every new worker \(still failing\)$/);
  assert.equal(probes, 1, "no heartbeat probe spent on kill_stuck: only reload's");
  assert.deepEqual(c.clock.sleeps.slice(0, 1), [1000]);
});

Deno.test("an init script that takes the pid file's process for php-fpm starts nothing: php-fpm is started as it would have started it", async () => {
  const logs = captureLogs();
  const host = new FpmHost();
  const master = host.up("php8.2-fpm", "T");
  // www-data's own php-fpm8.2, and the pid file it keeps naming it (after every removal)
  const decoy = host.addWorker(1, "decoy", { ppid: 1, pgid: 4242, pid: 4242 });
  const runner = host.runner((call) =>
    // Debian's script: start-stop-daemon --start --pidfile finds a live php-fpm8.2: exit 0
    call.cmd.endsWith("/service") && call.args[1] === "start" ? { code: 0 } : undefined
  );
  const removed: string[] = [];
  const c = {
    ...ctx(runner),
    fs: fakeFs({
      removed,
      executables: ["/usr/sbin/php-fpm8.2"],
      files: { "/run/php/php8.2-fpm.pid": `${decoy.pid}\n` },
    }),
  };
  const report = await relaunch({ ...fpm, knownMaster: master }, c, () => Promise.resolve(true));
  assert.equal(report.ok, true, report.reason);
  assert.ok(
    runner.lines().includes(
      "/usr/sbin/php-fpm8.2 --daemonize --fpm-config /etc/php/8.2/fpm/php-fpm.conf",
    ),
    runner.lines().join("\n"),
  );
  assert.match(report.steps[0]!, /the pid file named pid 4242, not a master: /);
  assert.ok(host.alive("php-fpm8.2").includes(decoy.pid), "www-data's process is not ours");
  assert.ok(
    logs.lines().some((l) =>
      /took it for php-fpm; starting \/usr\/sbin\/php-fpm8\.2 itself/.test(l)
    ),
  );
  // under systemd nothing of the kind: systemd knows its unit's main process
  const d = ctx(new FpmHost().runner(), "systemd");
  await relaunch(fpm, d, () => Promise.resolve(true));
  assert.ok(!d.runner.lines().some((l) => l.includes("--daemonize")));
});
