/**
 * The shipped systemd unit under a real systemd (a user manager of our own, see
 * support/systemd_user.ts): it becomes active only on READY=1, stays up on WATCHDOG=1 pings, is
 * killed and restarted when the watchdog hangs, reloads on `systemctl reload`, stops cleanly, and
 * is not restarted over a bad configuration. The heartbeat is a loopback server of the test's, so
 * the stack's php-fpm is never touched. A php-fpm8.2 of the test's own, run as Debian's unit runs
 * it, shows the master's exit watch (pidwait, and tail) seeing its master's SIGKILL at once.
 */
import assert from "node:assert/strict";
import { masterExitWatch } from "../../src/act/exit_watch.ts";
import { ROOT, runDir, startCommand } from "../support/cli.ts";
import { systemdMissing, UserManager, userManagerArtifacts } from "../support/systemd_user.ts";
import { waitFor } from "./stack.ts";

const UNIT = "php-relaunch.service";
/** A php-fpm8.2 of the test's own, run by the test's systemd as Debian's unit runs php-fpm. */
const FPM_UNIT = "php-fpm-exit-watch.service";
const WATCHDOG_S = 2;

/**
 * The shipped unit with what only a test changes: the command (`deno run` with the compiled
 * binary's permissions), the config, a short watchdog, the test's folder writable, and the
 * directives a user manager would misapply. Every change must find its line, so a reshaped unit
 * fails here instead of being tested half.
 */
function testUnit(shipped: string, config: string, dir: string): string {
  let unit = shipped;
  const set = (key: string, value: (old: string) => string) => {
    const line = new RegExp(`^${key}=(.*)$`, "m");
    const old = line.exec(unit)?.[1];
    assert.ok(old !== undefined, `the shipped unit has no ${key}=`);
    unit = unit.replace(line, `${key}=${value(old)}`);
  };
  const [cmd, args] = startCommand(["watch", "--config", config]);
  set("ExecStart", (old) => {
    assert.match(old, /^\/usr\/local\/bin\/php-relaunch watch --config /);
    return [cmd, ...args].join(" ");
  });
  set("ConditionPathExists", () => config);
  set("WatchdogSec", () => `${WATCHDOG_S}s`);
  set("ReadWritePaths", (old) => `${old} ${dir}`);
  for (const key of userManagerArtifacts) {
    const line = new RegExp(`^${key}=.*\n`, "m");
    assert.match(unit, line, `the shipped unit has no ${key}=`);
    unit = unit.replace(line, "");
  }
  const env = Deno.env.get("DENO_DIR");
  // PrivateTmp hides a checkout (and its deno) that lives in /tmp, as a CI clone may: show them
  const inTmp = [ROOT, Deno.execPath(), env ?? ""].filter((p) => /^\/(var\/)?tmp\//.test(p));
  return unit.replace(
    /^\[Service\]$/m,
    `[Service]\nWorkingDirectory=${ROOT}\nEnvironment=NO_COLOR=1 RUST_BACKTRACE=0${
      env ? ` DENO_DIR=${env}` : ""
    }\n${
      inTmp.length > 0 ? `BindReadOnlyPaths=${inTmp.join(" ")}\n` : ""
    }# a READY=1 that never comes fails the start within this\nTimeoutStartSec=30s`,
  );
}

function configText(dir: string, port: number, extra = ""): string {
  return `init = "sysv"
[defaults]
interval = 0.5
timeout = 2
mail_to = []
${extra}
[log]
file = "${dir}/watch.log"
[state]
dir = "${dir}/state"
lock_dir = "${dir}"
[[target]]
name = "pong"
url = "http://127.0.0.1:${port}/heartbeat"
service = "php8.2-fpm"
`;
}

const missing = await systemdMissing();

Deno.test({
  name:
    `e2e: the systemd unit under a real systemd: notify, watchdog, reload, stop, bad config, php-fpm's exit${
      missing === null ? "" : ` (skipped: ${missing})`
    }`,
  ignore: missing !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const work = await runDir("systemd-");
    const dir = work.path;
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("pong"),
    );
    let manager: UserManager | null = null;
    try {
      manager = await UserManager.start(dir);
      const sd = manager;
      const config = `${dir}/config.toml`;
      await Deno.writeTextFile(config, configText(dir, server.addr.port));
      const shipped = await Deno.readTextFile(`${ROOT}/systemd/php-relaunch.service`);
      await Deno.writeTextFile(`${sd.unitDir}/${UNIT}`, testUnit(shipped, config, dir));
      assert.equal((await sd.systemctl(["daemon-reload"])).code, 0);
      const show = () =>
        sd.show(UNIT, [
          "ActiveState",
          "SubState",
          "Result",
          "MainPID",
          "NRestarts",
          "ExecMainStatus",
          "WatchdogTimestampMonotonic",
        ]);
      const log = () => Deno.readTextFile(`${dir}/watch.log`).catch(() => "");

      await t.step("start returns once php-relaunch says READY=1", async () => {
        const started = await sd.systemctl(["start", UNIT]);
        const s = await show();
        const said = await Deno.readTextFile(`${dir}/systemd.log`).catch(() => "");
        assert.equal(
          started.code,
          0,
          `${started.stderr}\n${JSON.stringify(s)}\n${await log()}${said}`,
        );
        assert.equal(s.ActiveState, "active");
        assert.equal(s.SubState, "running");
        assert.match(await log(), /Watching 1 targets: pong/);
      });

      const first = await show();
      await t.step("WATCHDOG=1 pings keep it up past several watchdog periods", async () => {
        await new Promise((r) => setTimeout(r, 4 * WATCHDOG_S * 1000));
        const s = await show();
        assert.equal(s.ActiveState, "active");
        assert.equal(s.MainPID, first.MainPID, "systemd must not have restarted it");
        assert.equal(s.NRestarts, "0");
        assert.ok(
          Number(s.WatchdogTimestampMonotonic) > Number(first.WatchdogTimestampMonotonic),
          `the watchdog timestamp moved on: ${JSON.stringify([first, s])}`,
        );
      });

      await t.step("systemctl reload: SIGHUP re-reads the file in the same process", async () => {
        assert.equal((await sd.systemctl(["reload", UNIT])).code, 0);
        const seen = await waitFor(
          async () => /SIGHUP: configuration reloaded/.test(await log()),
          15_000,
        );
        assert.ok(seen !== null, await log());
        assert.equal((await show()).MainPID, first.MainPID);
      });

      await t.step("a hung watchdog (SIGSTOP) is killed by systemd and started again", async () => {
        const pid = Number(first.MainPID);
        assert.ok(pid > 0);
        // the unit's main process, started by this test's own manager
        Deno.kill(pid, "SIGSTOP");
        let last = await show();
        const back = await waitFor(
          async () => {
            last = await show();
            return last.NRestarts === "1" && last.ActiveState === "active" &&
              last.SubState === "running" && last.MainPID !== first.MainPID && last.MainPID !== "0";
          },
          60_000,
          500,
        );
        assert.ok(back !== null, `not restarted: ${JSON.stringify(last)}`);
        const gone = await Deno.stat(`/proc/${pid}`).then(() => false, () => true);
        assert.ok(gone, "the hung process was ended");
      });

      await t.step("systemctl stop: exit 0, inactive, not failed", async () => {
        assert.equal((await sd.systemctl(["stop", UNIT])).code, 0);
        const s = await show();
        assert.equal(s.ActiveState, "inactive", JSON.stringify(s));
        assert.equal(s.Result, "success");
        assert.equal(s.ExecMainStatus, "0");
        assert.match(await log(), /Stopped\.\s*$/);
      });

      await t.step("a bad configuration fails the unit at once, without restarts", async () => {
        await Deno.writeTextFile(
          config,
          configText(dir, server.addr.port, 'failure_threshold = "twice"'),
        );
        const started = await sd.systemctl(["start", UNIT]);
        assert.notEqual(started.code, 0);
        let s = await show();
        await waitFor(
          async () => {
            s = await show();
            return s.ActiveState === "failed";
          },
          15_000,
          250,
        );
        assert.equal(s.ActiveState, "failed", JSON.stringify(s));
        assert.equal(s.ExecMainStatus, "2");
        // Restart=on-failure would try again every RestartSec: RestartPreventExitStatus=2 stops it
        await new Promise((r) => setTimeout(r, 7000));
        s = await show();
        assert.equal(s.ActiveState, "failed");
        assert.equal(s.NRestarts, "0", JSON.stringify(s));
      });

      await t.step(
        "php-fpm under this systemd: its master's SIGKILL is seen by the exit watch at once",
        async () => {
          // Debian's php8.2-fpm.service, on a configuration of the test's own (no socket helper)
          const conf = `${dir}/php-fpm.conf`;
          await Deno.writeTextFile(
            conf,
            `[global]\npid = ${dir}/fpm.pid\nerror_log = ${dir}/fpm.log\n[exitwatch]\n` +
              `user = www-data\ngroup = www-data\nlisten = ${dir}/fpm.sock\n` +
              "pm = static\npm.max_children = 1\n",
          );
          await Deno.writeTextFile(
            `${sd.unitDir}/${FPM_UNIT}`,
            `[Service]\nType=notify\nExecStart=/usr/sbin/php-fpm8.2 --nodaemonize --fpm-config ${conf}\n`,
          );
          assert.equal((await sd.systemctl(["daemon-reload"])).code, 0);
          const started = await sd.systemctl(["start", FPM_UNIT]);
          assert.equal(started.code, 0, started.stderr);
          const master = Number((await sd.show(FPM_UNIT, ["MainPID"])).MainPID);
          assert.ok(master > 0, "systemd runs php-fpm's master");
          // procps' pidwait (a pidfd), and tail --pid, which waits for systemd's reaping
          const watches = [
            masterExitWatch(master, `${dir}/fpm.master-pid`),
            masterExitWatch(master, `${dir}/fpm-tail.master-pid`, []),
          ];
          try {
            // ms from `from` to each watch's firing, or null for none within `ms`
            const seen = (from: number, ms: number) =>
              Promise.all(watches.map((w) =>
                Promise.race([
                  w.exited.then(() => Date.now() - from),
                  new Promise<null>((r) => setTimeout(() => r(null), ms)),
                ])
              ));
            assert.deepEqual(await seen(Date.now(), 500), [null, null], "alive: nothing fires");
            const killedAt = Date.now();
            Deno.kill(master, "SIGKILL");
            const after = await seen(killedAt, 2000);
            assert.ok(after.every((ms) => ms !== null && ms < 1000), `seen after ${after} ms`);
            const s = await sd.show(FPM_UNIT, ["ActiveState", "Result"]);
            assert.deepEqual(s, { ActiveState: "failed", Result: "signal" }, "systemd saw it too");
          } finally {
            for (const w of watches) w.stop();
            await sd.systemctl(["stop", FPM_UNIT]);
          }
        },
      );
    } finally {
      await manager?.stop();
      await server.shutdown();
      await work.remove();
    }
  },
});
