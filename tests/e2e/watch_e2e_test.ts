/**
 * Watch mode end to end: the long-running service against Debian's nginx and php8.2-fpm, a second
 * php-fpm instance of the same version, and a real SMTP server. Changes system state, so the steps
 * run one after another and everything is restored at the end.
 */
import assert from "node:assert/strict";
import { runDir } from "../support/cli.ts";
import { configToml, WatchProcess } from "./watch_process.ts";
import {
  FPM_PROCESS,
  fpmMaster,
  HEARTBEAT,
  heartbeat,
  heartbeatOf,
  pids,
  SecondPool,
  sh,
  SmtpSink,
  Stack,
  waitFor,
} from "./stack.ts";

/** The commands of the kill rung, as the kernel names their processes. */
const RESTART_COMMANDS = new Set(["pkill", "pgrep", "service", "php8.2-fpm", "start-stop-daem"]);

/** The names of `pid`'s child processes, from /proc. */
async function childrenOf(pid: number): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${e.name}/stat`).catch(() => "");
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ")"
    const end = stat.lastIndexOf(")");
    const ppid = Number(stat.slice(end + 2).split(" ")[1]);
    if (ppid === pid) names.push(stat.slice(stat.indexOf("(") + 1, end));
  }
  return names;
}

const BROKEN_POOL = "/etc/php/8.2/fpm/pool.d/zz-php-relaunch-test-broken.conf";
/** A pool file php-fpm refuses: its configuration test fails. */
const REFUSED = "this is not a pool configuration\n";
/** A pool file php-fpm's test passes, whose socket cannot be made: the start itself fails. */
const UNBINDABLE = [
  "[zz-php-relaunch-test]",
  "user = www-data",
  "group = www-data",
  "listen = /nonexistent-php-relaunch/zz.sock",
  "pm = static",
  "pm.max_children = 1",
  "",
].join("\n");

const TARGET_A = `
[[target]]
name = "a"
url = "${HEARTBEAT}"
service = "php8.2-fpm"
`;

const TARGET_B = `
[[target]]
name = "b"
url = "${SecondPool.heartbeat}"
service = "${SecondPool.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${SecondPool.pidFile}"
`;

/** Kills every process of the first pool by pid (the fault we inject). */
async function killFirstPool(signal: Deno.Signal = "SIGKILL"): Promise<number[]> {
  const master = await fpmMaster();
  const first = (await pids(FPM_PROCESS)).filter((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[4] === String(master);
    } catch {
      return false;
    }
  });
  for (const pid of first) Deno.kill(pid, signal);
  return first;
}

Deno.test({
  name: "e2e: watch mode against real php-fpm pools",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stack = await Stack.up();
    const smtp = await SmtpSink.start();
    const work = await runDir("watch-");
    const root = work.path;
    let n = 0;
    const newDir = async () => {
      const dir = `${root}/${++n}`;
      await Deno.mkdir(dir);
      return dir;
    };
    /**
     * Watch mode on the first pool with the restart rung only and `defaults`, then a pool file
     * (`pool`) php-fpm cannot start with and a crash: every restart fails until the file goes.
     */
    const watchBrokenPool = async (defaults: string, pool: string) => {
      await stack.healthy();
      const dir = await newDir();
      const config = `${dir}/config.toml`;
      await Deno.writeTextFile(
        config,
        configToml({ dir, smtpPort: smtp.port, targets: TARGET_A, defaults })
          .replace('rungs = ["kill"]', 'rungs = ["restart"]')
          .replace("start_timeout = 5", "start_timeout = 2"),
      );
      const mailsBefore = (await smtp.messages()).length;
      const watch = WatchProcess.start(config, `${dir}/watch.log`);
      try {
        assert.ok(await watch.waitForLine(/Watching 1 targets/, 30_000));
        await Deno.writeTextFile(BROKEN_POOL, pool);
        await killFirstPool();
      } catch (err) {
        await watch.stop();
        throw err;
      }
      return { watch, mailsBefore };
    };
    try {
      await t.step(
        "two targets on two php-fpm instances restart independently; crash and hang recovered; a 0.5 s stall restarts nothing; an invalid SIGHUP keeps it running",
        async () => {
          await stack.healthy();
          await SecondPool.create();
          const dir = await newDir();
          const config = `${dir}/config.toml`;
          await Deno.writeTextFile(
            config,
            configToml({ dir, smtpPort: smtp.port, targets: TARGET_A + TARGET_B }),
          );
          const watch = WatchProcess.start(config, `${dir}/watch.log`);
          try {
            assert.ok(await watch.waitForLine(/Watching 2 targets/, 30_000), "started");

            // B crashes: only B is restarted
            const aMaster = await fpmMaster();
            const bMaster = await SecondPool.master();
            for (const pid of await SecondPool.pids()) Deno.kill(pid, "SIGKILL");
            const bBack = await waitFor(
              async () => (await heartbeatOf(SecondPool.heartbeat, 1000)) === "200",
              30_000,
              100,
            );
            assert.notEqual(bBack, null, "B answers again");
            assert.ok(await watch.waitForLine(/ 502 PHP restarted\./, 10_000));
            assert.notEqual(await SecondPool.master(), bMaster, "B has a new master");
            assert.equal(await fpmMaster(), aMaster, "A was not touched");

            // A hangs (SIGSTOP): only A is restarted
            const stopped = await killFirstPool("SIGSTOP");
            const bMaster2 = await SecondPool.master();
            const aBack = await waitFor(async () => (await heartbeat(1000)) === "200", 30_000, 100);
            for (const pid of stopped) {
              try {
                Deno.kill(pid, "SIGCONT");
              } catch { /* killed by the watchdog */ }
            }
            assert.notEqual(aBack, null, "A answers again");
            assert.notEqual(await fpmMaster(), aMaster, "A has a new master");
            assert.equal(await SecondPool.master(), bMaster2, "B was not touched");
            assert.ok(await watch.waitForLine(/ timeout PHP restarted\./, 10_000));
            // deno-lint-ignore no-console -- the recovery times are figures worth seeing in CI output
            console.log(
              `  SIGKILL of B: 200 after ${bBack} ms; SIGSTOP of A: 200 after ${aBack} ms`,
            );

            // a 0.5 s stall of A: no restart
            await new Promise((r) => setTimeout(r, 3000)); // past the grace period
            const restartsBefore = (await watch.lines()).filter((l) =>
              /PHP restarted/.test(l)
            ).length;
            const aMaster3 = await fpmMaster();
            const frozen = await killFirstPool("SIGSTOP");
            await new Promise((r) => setTimeout(r, 500));
            for (const pid of frozen) Deno.kill(pid, "SIGCONT");
            await new Promise((r) => setTimeout(r, 5000));
            assert.equal(await fpmMaster(), aMaster3, "no restart for a 0.5 s stall");
            assert.equal(
              (await watch.lines()).filter((l) => /PHP restarted/.test(l)).length,
              restartsBefore,
            );

            // SIGHUP with an invalid file: logged, old configuration kept, still watching
            await Deno.writeTextFile(config, "[[target]]\nname = 'a'\n");
            watch.child.kill("SIGHUP");
            assert.ok(
              await watch.waitForLine(/new configuration is invalid, keeping the old one/, 10_000),
            );
            for (const pid of await SecondPool.pids()) Deno.kill(pid, "SIGKILL");
            assert.notEqual(
              await waitFor(
                async () => (await heartbeatOf(SecondPool.heartbeat, 1000)) === "200",
                30_000,
                100,
              ),
              null,
              "still restarting after the invalid SIGHUP",
            );
            assert.equal(await watch.stop(), 0, "SIGTERM: exit 0");
          } finally {
            await watch.stop();
            await SecondPool.remove();
          }
        },
      );

      await t.step(
        "a pool that cannot start: exactly max_restarts restarts, one 'giving up' mail, re-armed by SIGHUP after the fix",
        async () => {
          const { watch, mailsBefore } = await watchBrokenPool(
            'max_restarts = 2\nrestart_window = "15m"',
            UNBINDABLE,
          );
          try {
            assert.ok(await watch.waitForLine(/giving up until/, 60_000), "gave up");
            await new Promise((r) => setTimeout(r, 3000));
            const lines = await watch.lines();
            assert.equal(
              lines.filter((l) => /PHP restart failed/.test(l)).length,
              2,
              lines.join("\n"),
            );
            // the configuration passes php-fpm's test: these failed starts count
            assert.ok(!lines.some((l) => /-t passes/.test(l)), lines.join("\n"));
            await waitFor(async () => (await smtp.messages()).length >= mailsBefore + 3, 10_000);
            const subjects = (await smtp.messages()).slice(mailsBefore).map((m) =>
              m.subject.replace(/^\S+ /, "").replace(/ \[[^\]]+\]$/, "")
            );
            assert.deepEqual(subjects, [
              "PHP restart failed",
              "PHP restart failed",
              "PHP restart given up",
            ]);
            // (the first pool's master: other instances of php-fpm8.2 may run beside it)
            const first = await sh("pgrep", [
              "-f",
              "^php-fpm: master process \\(/etc/php/8\\.2/fpm/php-fpm\\.conf\\)",
            ]);
            assert.equal(first.out.trim(), "", "given up: no more restarts");

            // the operator fixes the pool and sends SIGHUP: re-armed, restarted, healthy
            await Deno.remove(BROKEN_POOL);
            watch.child.kill("SIGHUP");
            assert.notEqual(
              await waitFor(async () => (await heartbeat(1000)) === "200", 30_000, 200),
              null,
            );
            assert.ok(await watch.waitForLine(/PHP restarted\./, 10_000));
            assert.equal(await watch.stop(), 0);
          } finally {
            await Deno.remove(BROKEN_POOL).catch(() => {});
            await watch.stop();
          }
        },
      );

      await t.step(
        "a pool file php-fpm refuses: one start, not counted; fixed, restarted at once; a crash after the fix too",
        async () => {
          const { watch, mailsBefore } = await watchBrokenPool("max_restarts = 2", REFUSED);
          try {
            assert.ok(await watch.waitForLine(/PHP restart failed/, 60_000), "the start failed");
            // held: more failed probes, no second start, never given up
            await new Promise((r) => setTimeout(r, 8000));
            let lines = await watch.lines();
            const failed = lines.filter((l) => /PHP restart failed/.test(l));
            assert.equal(failed.length, 1, lines.join("\n"));
            // php-fpm's own configuration test names the file and line that stop it
            assert.match(
              failed[0]!,
              /php-fpm8\.2 cannot start: \[\/etc\/php\/8\.2\/fpm\/pool\.d\/zz-php-relaunch-test-broken\.conf:1\] .*; the next start is made once php-fpm8\.2 -t passes\.$/,
            );
            assert.ok(!lines.some((l) => /giving up/.test(l)), lines.join("\n"));
            // the operator fixes the pool file, and sends nothing: started at once
            await Deno.remove(BROKEN_POOL);
            const back = await waitFor(async () => (await heartbeat(1000)) === "200", 30_000, 200);
            assert.notEqual(back, null, (await watch.lines()).join("\n"));
            assert.ok(
              await watch.waitForLine(/configuration test passes again: restarting/, 10_000),
            );
            assert.ok(await watch.waitForLine(/PHP restarted\./, 10_000));
            // a crash after the fix: 1 restart of 2 is spent, the refused start is not
            await new Promise((r) => setTimeout(r, 5000));
            await killFirstPool();
            assert.notEqual(
              await waitFor(async () => (await heartbeat(1000)) === "200", 30_000, 200),
              null,
              "the crash after the fix is restarted",
            );
            // its line is written once the restart is verified, a moment after the heartbeat
            const restarted = async () =>
              (await watch.lines()).filter((l) => /PHP restarted\./.test(l)).length;
            await waitFor(async () => (await restarted()) >= 2, 10_000, 200);
            lines = await watch.lines();
            assert.equal(await restarted(), 2, lines.join("\n"));
            assert.ok(!lines.some((l) => /giving up/.test(l)), lines.join("\n"));
            await waitFor(async () => (await smtp.messages()).length >= mailsBefore + 3, 10_000);
            const subjects = (await smtp.messages()).slice(mailsBefore).map((m) =>
              m.subject.replace(/^\S+ /, "").replace(/ \[[^\]]+\]$/, "")
            );
            assert.ok(!subjects.includes("PHP restart given up"), subjects.join(", "));
            assert.equal(await watch.stop(), 0);
          } finally {
            await Deno.remove(BROKEN_POOL).catch(() => {});
            await watch.stop();
          }
        },
      );

      await t.step(
        "given up is not forever: fixed without a signal, the retry after retry_after brings it back",
        async () => {
          const { watch, mailsBefore } = await watchBrokenPool(
            'max_restarts = 1\nretry_after = ["6s"]',
            UNBINDABLE,
          );
          try {
            assert.ok(await watch.waitForLine(/next single attempt at /, 60_000), "gave up");
            // the operator repairs the pool, and sends nothing
            await Deno.remove(BROKEN_POOL);
            assert.notEqual(
              await waitFor(async () => (await heartbeat(1000)) === "200", 40_000, 200),
              null,
              "the retry restarted it",
            );
            assert.ok(await watch.waitForLine(/restarted by retry 1 after giving up/, 10_000));
            await waitFor(async () => (await smtp.messages()).length >= mailsBefore + 3, 10_000);
            const subjects = (await smtp.messages()).slice(mailsBefore).map((m) =>
              m.subject.replace(/^\S+ /, "").replace(/ \[[^\]]+\]$/, "")
            );
            assert.deepEqual(subjects, [
              "PHP restart failed",
              "PHP restart given up",
              "PHP recovered",
            ]);
            // armed again: the next crash is restarted at once, as usual
            await killFirstPool();
            assert.notEqual(
              await waitFor(async () => (await heartbeat(1000)) === "200", 30_000, 200),
              null,
            );
            assert.equal(await watch.stop(), 0);
          } finally {
            await Deno.remove(BROKEN_POOL).catch(() => {});
            await watch.stop();
          }
        },
      );

      await t.step(
        "SIGKILL of the watchdog in the middle of a restart: the next start recovers",
        async () => {
          await stack.healthy();
          const dir = await newDir();
          const config = `${dir}/config.toml`;
          await Deno.writeTextFile(
            config,
            configToml({ dir, smtpPort: smtp.port, targets: TARGET_A }),
          );
          const first = WatchProcess.start(config, `${dir}/watch.log`);
          try {
            assert.ok(await first.waitForLine(/Watching 1 targets/, 30_000));
            // freeze the pool so the restart has to kill it, then kill the watchdog during it:
            // while it runs one of the restart's commands (pkill, service)
            const frozen = await killFirstPool("SIGSTOP");
            let seen: string[] = [];
            const underWay = await waitFor(
              async () => {
                seen = await childrenOf(first.child.pid);
                return seen.some((name) => RESTART_COMMANDS.has(name));
              },
              30_000,
              5,
            );
            first.child.kill("SIGKILL");
            await first.child.status;
            assert.notEqual(underWay, null, `no restart command seen (children: ${seen})`);
            assert.ok(
              !(await first.lines()).some((l) => /PHP restart/.test(l)),
              "the restart had not ended when the kill landed",
            );
            for (const pid of frozen) {
              try {
                Deno.kill(pid, "SIGCONT");
              } catch { /* killed */ }
            }
            const state = JSON.parse(await Deno.readTextFile(`${dir}/state/a.json`));
            assert.equal(state.version, 1, "the state file is whole");
            // whatever the killed run left, a new one takes the lock and brings A back
            await killFirstPool();
            const second = WatchProcess.start(config, `${dir}/watch.log`);
            try {
              // the killed run's `service start` may bring php-fpm back by itself: wait for the
              // new run to be up (its signal handlers in place) before judging or stopping it
              const started = async () =>
                (await second.lines()).filter((l) => /Watching 1 targets/.test(l)).length === 2;
              assert.notEqual(await waitFor(started, 30_000, 100), null, "the second run started");
              assert.notEqual(
                await waitFor(async () => (await heartbeat(1000)) === "200", 40_000, 200),
                null,
              );
              assert.equal(await second.stop(), 0);
            } finally {
              await second.stop();
            }
          } finally {
            await first.stop();
          }
        },
      );
    } finally {
      await smtp.stop();
      await work.remove();
      await Deno.remove(BROKEN_POOL).catch(() => {});
      await stack.healthy().catch(() => {});
      await stack.down();
    }
  },
});
