import assert from "node:assert/strict";
import { DEFAULT_RELAUNCH, relaunch, type RelaunchTarget } from "../../src/act/restart.ts";
import type { Tools } from "../../src/act/service.ts";
import {
  captureLogs,
  DEBIAN_TOOLS,
  FakeClock,
  fakeFs,
  FakeRunner,
  psAnswer,
  type RunCall,
} from "../support/fakes.ts";

const tools: Tools = { ...DEBIAN_TOOLS, systemctl: "/usr/bin/systemctl" };
/** The positional form's target: the kill rung only, no pid file (selected by name). */
const fpm: RelaunchTarget = {
  service: "php8.2-fpm",
  processName: "php-fpm8.2",
  pidFile: null,
  rungs: ["kill"],
};

/**
 * A host where php-fpm has `initial` processes; pkill kills them unless `unkillable`; each start
 * brings processes up from the `startsToComeUp`-th start on.
 */
function host(opts: { initial?: number; startsToComeUp?: number; unkillable?: boolean } = {}) {
  let running = opts.initial ?? 3;
  let starts = 0;
  return new FakeRunner((call: RunCall) => {
    const bin = call.cmd.split("/").pop();
    if (bin === "ps") return psAnswer(call);
    if (bin === "pgrep") {
      return running > 0
        ? { code: 0, stdout: Array.from({ length: running }, (_, i) => `${100 + i}`).join("\n") }
        : { code: 1 };
    }
    if (bin === "pkill") {
      if (running === 0) return { code: 1 };
      if (!opts.unkillable) running = 0;
      return { code: 0 };
    }
    if (call.args.includes("start")) {
      starts++;
      if (starts >= (opts.startsToComeUp ?? 1)) running = 3;
      return { code: 0 };
    }
    return { code: 0 };
  });
}

const ctx = (runner: FakeRunner, init: "sysv" | "systemd" = "sysv", fs = fakeFs({})) => ({
  init,
  tools,
  runner,
  clock: new FakeClock(),
  fs,
});

Deno.test("sysv: SIGKILL by exact name, then `service NAME start`, verified by pgrep and a probe", async () => {
  captureLogs();
  const runner = host();
  let probes = 0;
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(++probes > 0));
  assert.equal(report.ok, true);
  assert.equal(report.attempts, 1);
  assert.equal(report.killed, 3);
  assert.equal(probes, 1);
  assert.deepEqual(runner.lines(), [
    "/usr/bin/pgrep -x php-fpm8.2",
    "/usr/bin/ps -o pid=,stat= -p 100,101,102",
    "/usr/bin/pkill -KILL -x php-fpm8.2",
    "/usr/bin/pgrep -x php-fpm8.2",
    "/usr/sbin/service php8.2-fpm start",
    "/usr/bin/pgrep -x php-fpm8.2",
    "/usr/bin/ps -o pid=,stat= -p 100,101,102",
  ]);
  for (const c of runner.calls) assert.ok(c.timeoutMs > 0, "every command has a timeout");
});

Deno.test("nothing running: no pkill, straight to start", async () => {
  captureLogs();
  const runner = host({ initial: 0 });
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  assert.equal(report.ok, true);
  assert.equal(report.killed, 0);
  assert.ok(!runner.lines().some((l) => l.includes("pkill")));
});

Deno.test("retries about 2 s apart until the service comes up", async () => {
  captureLogs();
  const runner = host({ startsToComeUp: 3 });
  const c = ctx(runner);
  const report = await relaunch(fpm, c, () => Promise.resolve(true));
  assert.equal(report.ok, true);
  assert.equal(report.attempts, 3);
  assert.equal(runner.lines().filter((l) => l.endsWith("start")).length, 3);
  assert.deepEqual(c.clock.sleeps.filter((ms) => ms === 2000).length, 2);
});

Deno.test("a probe that stays bad means another attempt, up to 10, then failure", async () => {
  captureLogs();
  const runner = host();
  let probes = 0;
  const report = await relaunch(fpm, ctx(runner), () => {
    probes++;
    return Promise.resolve(false);
  });
  assert.equal(report.ok, false);
  assert.equal(report.attempts, DEFAULT_RELAUNCH.maxAttempts);
  assert.equal(probes, 10);
  assert.match(report.reason, /runs but the heartbeat is still failing/);
});

Deno.test("never comes up: 10 attempts and a reason naming the start command", async () => {
  captureLogs();
  const runner = host({ startsToComeUp: 99 });
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  assert.equal(report.ok, false);
  assert.equal(report.attempts, 10);
  assert.match(
    report.reason,
    /no php-fpm8\.2 process after \/usr\/sbin\/service php8\.2-fpm start/,
  );
});

Deno.test("a deadline (a cron run's period): no attempt or rung begins that could end after it", async () => {
  captureLogs();
  const runner = host({ startsToComeUp: 99 });
  const c = ctx(runner);
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
  const c2 = ctx(h.runner, "sysv", h.fs);
  const late = { ...quick, deadline: c2.clock.now() + quick.startTimeoutMs + 100 };
  const laddered = await relaunch(ladder, { ...c2, options: late }, h.verify);
  assert.equal(laddered.rung, "reload", "the restart rung was not begun");
  assert.match(laddered.steps.at(-1)!, /^restart: not begun: no time left in this run/);
});

Deno.test("zombies do not count as running: a killed master its parent has not reaped yet", async () => {
  captureLogs();
  let killed = false;
  const runner = new FakeRunner((call) => {
    if (call.cmd.endsWith("/ps")) return psAnswer(call, killed ? "Z" : "S");
    if (call.cmd.endsWith("pgrep")) return { code: 0, stdout: "100" };
    if (call.cmd.endsWith("pkill")) killed = true;
    return { code: 0 };
  });
  const report = await relaunch(fpm, {
    ...ctx(runner),
    options: { ...DEFAULT_RELAUNCH, maxAttempts: 2 },
  }, () => Promise.resolve(true));
  assert.equal(
    runner.lines().filter((l) => l.includes("pkill")).length,
    1,
    "one SIGKILL was enough",
  );
  assert.equal(report.ok, false, "a zombie is not a running php-fpm");
  assert.match(report.reason, /no php-fpm8\.2 process/);
});

Deno.test("processes that survive SIGKILL: bounded rounds, then start anyway", async () => {
  const logs = captureLogs();
  const runner = host({ unkillable: true });
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  assert.equal(runner.lines().filter((l) => l.includes("pkill")).length, 10);
  assert.equal(report.ok, true);
  assert.ok(logs.lines().some((l) => /survived SIGKILL/.test(l)));
});

Deno.test("a command that cannot run ends the relaunch with its reason, no retries", async () => {
  captureLogs();
  const runner = new FakeRunner(() => new Deno.errors.NotFound("Failed to spawn 'pgrep'"));
  const report = await relaunch(fpm, ctx(runner), () => Promise.resolve(true));
  assert.equal(report.ok, false);
  assert.equal(runner.calls.length, 1);
  assert.match(report.reason, /Failed to spawn/);
});

/** A pool with a pid file, whose master is in `state`; records commands; heals on `healsOn`. */
function ladderHost(state: "S" | "T" | null, healsOn: "reload" | "restart" | "start") {
  let healthy = false;
  const runner = new FakeRunner((call) => {
    const line = [call.cmd, ...call.args].join(" ");
    if (call.cmd.endsWith("/ps")) {
      // the master is in `state` (or gone); the workers sleep
      if (call.args.at(-1) === "1410") return state ? psAnswer(call, state) : { code: 1 };
      return psAnswer(call);
    }
    if (call.cmd.endsWith("pgrep")) return { code: 0, stdout: "1410\n1411" };
    if (line.includes("-USR2")) healthy ||= healsOn === "reload";
    if (line.endsWith(" restart")) healthy ||= healsOn === "restart";
    if (line.endsWith(" start")) healthy ||= healsOn === "start";
    return { code: 0 };
  });
  const fs = fakeFs({ files: { "/run/php/php8.2-fpm.pid": "1410\n" } });
  return { runner, fs, verify: () => Promise.resolve(healthy) };
}

/** The commands that act (not pgrep/ps, which only look). */
const acts = (runner: FakeRunner) => runner.lines().filter((l) => !/\/(pgrep|ps) /.test(l));

const ladder: RelaunchTarget = {
  ...fpm,
  pidFile: "/run/php/php8.2-fpm.pid",
  rungs: ["reload", "restart", "kill"],
};
const quick = { ...DEFAULT_RELAUNCH, startTimeoutMs: 2000, verifyEveryMs: 500 };

Deno.test("ladder: a graceful reload (SIGUSR2 to the master) is tried first", async () => {
  captureLogs();
  const h = ladderHost("S", "reload");
  const report = await relaunch(
    ladder,
    { ...ctx(h.runner, "sysv", h.fs), options: quick },
    h.verify,
  );
  assert.equal(report.ok, true);
  assert.equal(report.rung, "reload");
  assert.deepEqual(acts(h.runner), ["/usr/bin/pkill -USR2 -g 1410 -o -x php-fpm8.2"]);
});

Deno.test("ladder: a reload that does not help within start_timeout leads to restart", async () => {
  captureLogs();
  const h = ladderHost("S", "restart");
  const c = { ...ctx(h.runner, "sysv", h.fs), options: quick };
  const report = await relaunch(ladder, c, h.verify);
  assert.equal(report.rung, "restart");
  assert.deepEqual(acts(h.runner), [
    "/usr/bin/pkill -USR2 -g 1410 -o -x php-fpm8.2",
    "/usr/sbin/service php8.2-fpm restart",
  ]);
  assert.match(report.steps[0]!, /^reload: SIGUSR2 to master 1410 \(still failing\)$/);
  assert.ok(c.clock.sleeps.filter((ms) => ms === 500).length >= 3, "re-probed until the timeout");
});

Deno.test("ladder: a stopped (SIGSTOP) master skips the gentle rungs; only its own pool is killed", async () => {
  captureLogs();
  const h = ladderHost("T", "start");
  const report = await relaunch(
    ladder,
    { ...ctx(h.runner, "sysv", h.fs), options: quick },
    h.verify,
  );
  assert.equal(report.ok, true);
  assert.equal(report.rung, "kill");
  const lines = h.runner.lines();
  assert.ok(!lines.some((l) => l.includes("USR2") || l.endsWith("restart")), lines.join("\n"));
  assert.ok(
    lines.includes("/usr/bin/pkill -KILL -g 1410 -x php-fpm8.2"),
    "the pool's process group",
  );
  assert.ok(!lines.includes("/usr/bin/pkill -KILL -x php-fpm8.2"), "never every php-fpm8.2");
});

Deno.test("ladder: a dead master (crash) skips reload and restarts through the init system", async () => {
  captureLogs();
  const h = ladderHost(null, "restart");
  const report = await relaunch(
    ladder,
    { ...ctx(h.runner, "sysv", h.fs), options: quick },
    h.verify,
  );
  assert.equal(report.rung, "restart");
  assert.deepEqual(report.steps[0], "reload: skipped (master gone or stopped)");
});

/**
 * A pool (master 1410) whose workers 1411 and 1412 are stuck; 9999 has since become another
 * program's pid. Healthy once both stuck workers are killed when `killHeals`.
 */
function stuckHost(killHeals: boolean) {
  let healthy = false;
  const runner = new FakeRunner((call) => {
    if (call.cmd.endsWith("/ps") && call.args[1] === "pid=,pgid=,comm=") {
      return {
        stdout: [
          " 1411  1410 php-fpm8.2",
          " 1412  1410 php-fpm8.2",
          " 9999  9999 postgres",
        ].join("\n"),
      };
    }
    if (call.cmd.endsWith("/ps")) return psAnswer(call);
    if (call.cmd.endsWith("/kill")) healthy ||= killHeals;
    if (call.cmd.endsWith("pgrep")) return { code: 0, stdout: "1410\n1411" };
    if ([call.cmd, ...call.args].join(" ").includes("-USR2")) healthy = true;
    return { code: 0 };
  });
  const fs = fakeFs({ files: { "/run/php/php8.2-fpm.pid": "1410\n" } });
  return { runner, fs, verify: () => Promise.resolve(healthy) };
}

const withStuck: RelaunchTarget = {
  ...ladder,
  rungs: ["kill_stuck", "reload", "restart", "kill"],
  stuck: [1411, 1412, 9999, 1410],
};

Deno.test("kill_stuck: only the stuck workers still in this pool get SIGKILL; the master stays", async () => {
  captureLogs();
  const h = stuckHost(true);
  const report = await relaunch(
    withStuck,
    { ...ctx(h.runner, "sysv", h.fs), options: quick },
    h.verify,
  );
  assert.equal(report.ok, true);
  assert.equal(report.rung, "kill_stuck");
  assert.equal(report.killed, 2);
  assert.deepEqual(acts(h.runner), ["/usr/bin/kill -KILL 1411 1412"]);
  assert.ok(
    h.runner.lines().includes("/usr/bin/ps -o pid=,pgid=,comm= -p 1411,1412,9999,1410"),
    "each pid checked before the kill",
  );
  assert.deepEqual(report.steps, ["kill_stuck: SIGKILL to stuck workers 1411, 1412"]);
});

Deno.test("kill_stuck: when killing them does not help soon, the next rung acts", async () => {
  captureLogs();
  const h = stuckHost(false);
  const c = { ...ctx(h.runner, "sysv", h.fs), options: { ...quick, startTimeoutMs: 30_000 } };
  const report = await relaunch(withStuck, c, h.verify);
  assert.equal(report.rung, "reload");
  assert.match(
    report.steps[0]!,
    /^kill_stuck: SIGKILL to stuck workers 1411, 1412 \(still failing\)$/,
  );
  // not the full start_timeout: new workers answer at once, or not at all
  const waited = c.clock.sleeps.slice(0, 10).filter((ms) => ms === 500).length;
  assert.ok(waited <= 6, `waited ${waited} verify rounds`);
});

Deno.test("kill_stuck: skipped without stuck workers (no status page) or without a master", async () => {
  captureLogs();
  const h = stuckHost(true);
  const none = await relaunch(
    { ...withStuck, stuck: [] },
    { ...ctx(h.runner, "sysv", h.fs), options: quick },
    h.verify,
  );
  assert.equal(none.rung, "reload");
  assert.equal(none.steps[0], "kill_stuck: skipped (no stuck worker known)");
  const h2 = stuckHost(true);
  const noMaster = await relaunch(
    { ...withStuck, pidFile: "/run/php/none.pid" },
    { ...ctx(h2.runner, "sysv", fakeFs({})), options: quick },
    h2.verify,
  );
  assert.equal(noMaster.steps[0], "kill_stuck: skipped (no stuck worker known)");
  assert.ok(!h2.runner.lines().some((l) => l.startsWith("/usr/bin/kill")));
});

Deno.test("kill_stuck: a status page with no idle worker after the kill moves on within a second", async () => {
  captureLogs();
  const h = stuckHost(false);
  const c = { ...ctx(h.runner, "sysv", h.fs), options: { ...quick, startTimeoutMs: 30_000 } };
  let probes = 0;
  const report = await relaunch(
    { ...withStuck, poolHasRoom: () => Promise.resolve(false) },
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
