/**
 * Discovery end to end: Debian's php8.2-fpm with a second pool added by the test (a ping and a
 * status listener); `discover` finds both pools, `discover --config` writes a configuration that
 * `check-config` accepts and `watch` runs as it is, and that watch restarts the service after a
 * crash. The pool file is removed and php-fpm restarted as it was at the end.
 */
import assert from "node:assert/strict";
import { directFcgiGet } from "../../src/probe/fcgi.ts";
import { ROOT, runCli, runDir, startCommand } from "../support/cli.ts";
import { FPM_PROCESS, FPM_SERVICE, heartbeat, pids, sh, Stack, waitFor } from "./stack.ts";

const POOL_FILE = "/etc/php/8.2/fpm/pool.d/zz-php-relaunch-discover.conf";
const SOCKET = "/run/php/php-relaunch-discover.sock";
const STATUS_PORT = 9076;

/** Whether the test pool answers its ping over its own socket. */
async function pong(): Promise<boolean> {
  try {
    const r = await directFcgiGet(
      { address: { transport: "unix", path: SOCKET }, path: "/ping", query: "" },
      AbortSignal.timeout(1000),
    );
    return r.status === 200 && r.body.startsWith("pong");
  } catch {
    return false;
  }
}

Deno.test({
  name: "e2e: discover finds a second pool and writes a config that watch runs and restarts with",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const stack = await Stack.up();
    const work = await runDir("discover-");
    const dir = work.path;
    let watch: Deno.ChildProcess | null = null;
    try {
      await Deno.writeTextFile(
        POOL_FILE,
        [
          "[discover]",
          "user = www-data",
          "group = www-data",
          `listen = ${SOCKET}`,
          "listen.owner = www-data",
          "listen.group = www-data",
          "pm = static",
          "pm.max_children = 2",
          "ping.path = /ping",
          "pm.status_path = /status",
          `pm.status_listen = 127.0.0.1:${STATUS_PORT}`,
          "",
        ].join("\n"),
      );
      await sh("service", [FPM_SERVICE, "restart"]);
      assert.notEqual(await waitFor(pong, 20_000, 200), null, "the second pool answers");

      const table = await runCli(["discover"]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(
        table.stdout,
        /^php8\.2-fpm: processes php-fpm8\.2, pid file \/run\/php\/php8\.2-fpm\.pid/,
      );
      assert.match(
        table.stdout,
        /\n {2}discover +\/run\/php\/php-relaunch-discover\.sock +static\/2 +\/ping +\/status +127\.0\.0\.1:9076/,
      );
      assert.match(table.stdout, /\n {2}www +\/run\/php\/php8\.2-fpm\.sock/);

      const toml = await runCli(["discover", "--config"]);
      assert.equal(toml.code, 0, toml.stderr);
      assert.match(toml.stdout, new RegExp(`^url = "fcgi\\+unix://${SOCKET}/ping"$`, "m"));
      assert.match(toml.stdout, /^status_url = "fcgi:\/\/127\.0\.0\.1:9076\/status"$/m);
      assert.match(
        toml.stdout,
        /# add "ping\.path = \/ping" to \[www\] in \/etc\/php\/8\.2\/fpm\/pool\.d\/www\.conf/,
      );
      const config = `${dir}/config.toml`;
      await Deno.writeTextFile(config, toml.stdout + "\n");
      // the file as written; only where this test keeps its log, state and lock is its own
      const own = [
        "--log-file",
        `${dir}/watch.log`,
        "--state-dir",
        `${dir}/state`,
        "--lock-file",
        `${dir}/lock`,
      ];
      const check = await runCli(["check-config", "--config", config, ...own]);
      assert.equal(check.code, 0, check.stderr);

      const [cmd, args] = startCommand(["watch", "--config", config, "--interval", "1", ...own]);
      watch = new Deno.Command(cmd, {
        args,
        cwd: ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      })
        .spawn();
      const lines = async () => (await Deno.readTextFile(`${dir}/watch.log`).catch(() => ""));
      assert.notEqual(
        await waitFor(async () => /Watching 1 targets/.test(await lines()), 30_000, 200),
        null,
        "watch started on the discovered configuration",
      );
      for (const pid of await pids(FPM_PROCESS)) Deno.kill(pid, "SIGKILL");
      assert.notEqual(await waitFor(pong, 30_000, 200), null, "restarted: the pool answers again");
      assert.notEqual(
        await waitFor(async () => / PHP restarted\./.test(await lines()), 20_000, 200),
        null,
        await lines(),
      );
      assert.equal(await heartbeat(), "200", "and the site through nginx");
    } finally {
      if (watch !== null) {
        try {
          watch.kill("SIGTERM");
        } catch { /* exited */ }
        await watch.status;
      }
      await Deno.remove(POOL_FILE).catch(() => {});
      await sh("service", [FPM_SERVICE, "restart"]);
      await work.remove();
      await stack.healthy().catch(() => {});
      await stack.down();
    }
  },
});
