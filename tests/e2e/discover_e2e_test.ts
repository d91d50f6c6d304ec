/**
 * Discovery end to end: Debian's php8.2-fpm with two pools added by the test (each with a ping and
 * a status listener); `discover` finds them, `discover --config` writes a configuration that
 * `check-config` accepts and `watch` runs as it is. That watch frees an exhausted pool by killing
 * its stuck workers while the other pool keeps answering (the master kept), then restarts the
 * service after a crash. The pool file is removed and php-fpm restarted as it was at the end.
 */
import assert from "node:assert/strict";
import { directFcgiGet } from "../../src/probe/fcgi.ts";
import { ROOT, runCli, runDir, startCommand } from "../support/cli.ts";
import type { IncidentRecord } from "../../src/record/incidents.ts";
import {
  FPM_PROCESS,
  FPM_SERVICE,
  fpmMaster,
  heartbeat,
  pids,
  sh,
  Stack,
  waitFor,
} from "./stack.ts";

const POOL_FILE = "/etc/php/8.2/fpm/pool.d/zz-php-relaunch-discover.conf";
const SOCKET = "/run/php/php-relaunch-discover.sock";
const STATUS_PORT = 9076;
/** The second pool: the one exhausted while the first keeps answering. */
const SOCKET_B = "/run/php/php-relaunch-discover-b.sock";
const STATUS_PORT_B = 9077;
const SCRIPTS = "/var/www/php-relaunch-test-discover";
const SLEEP = `${SCRIPTS}/sleep.php`;

/** Whether a test pool answers its ping over its own socket (by default the first pool's). */
async function pong(socket = SOCKET): Promise<boolean> {
  try {
    const r = await directFcgiGet(
      { address: { transport: "unix", path: socket }, path: "/ping", query: "" },
      AbortSignal.timeout(1000),
    );
    return r.status === 200 && r.body.startsWith("pong");
  } catch {
    return false;
  }
}

/** Occupies one worker of the second pool with a request that sleeps; abort() ends the wait. */
function occupy(stop: AbortSignal): Promise<unknown> {
  return directFcgiGet(
    { address: { transport: "unix", path: SOCKET_B }, path: SLEEP, query: "s=300" },
    stop,
  ).catch((err) => err);
}

/** A pool section of the test's pool file. */
function poolLines(name: string, socket: string, statusPort: number): string[] {
  return [
    `[${name}]`,
    "user = www-data",
    "group = www-data",
    `listen = ${socket}`,
    "listen.owner = www-data",
    "listen.group = www-data",
    "pm = static",
    "pm.max_children = 2",
    "ping.path = /ping",
    "pm.status_path = /status",
    `pm.status_listen = 127.0.0.1:${statusPort}`,
    "",
  ];
}

Deno.test({
  name:
    "e2e: discover finds two pools and writes a config that watch runs: an exhausted pool freed while the other serves, a crash restarted",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const stack = await Stack.up();
    const work = await runDir("discover-");
    const dir = work.path;
    let watch: Deno.ChildProcess | null = null;
    try {
      await Deno.mkdir(SCRIPTS, { recursive: true, mode: 0o755 });
      await Deno.writeTextFile(SLEEP, "<?php sleep((int)($_GET['s'] ?? 1)); echo 'slept';\n");
      await Deno.chmod(SLEEP, 0o644);
      await Deno.writeTextFile(
        POOL_FILE,
        [
          ...poolLines("discover", SOCKET, STATUS_PORT),
          ...poolLines("discover-b", SOCKET_B, STATUS_PORT_B),
        ].join("\n"),
      );
      await sh("service", [FPM_SERVICE, "restart"]);
      assert.notEqual(await waitFor(() => pong(), 20_000, 200), null, "the test's pool answers");
      assert.notEqual(await waitFor(() => pong(SOCKET_B), 20_000, 200), null, "and the second");

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
      assert.match(toml.stdout, /^pool_name = "discover"$/m);
      assert.match(
        toml.stdout,
        new RegExp(
          `\\[\\[target\\.pool\\]\\]\\nname = "discover-b"\\nurl = "fcgi\\+unix://${SOCKET_B}/ping"\\nstatus_url = "fcgi://127\\.0\\.0\\.1:${STATUS_PORT_B}/status"`,
        ),
      );
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

      // the second pool exhausted: both its workers stuck on a request; the first must go on
      // answering, and only the second pool's workers be killed, the master kept
      const master = await fpmMaster();
      const stop = new AbortController();
      const requests = [occupy(stop.signal), occupy(stop.signal)];
      const missed: number[] = [];
      let pings = 0;
      try {
        const freed = await waitFor(
          async () => {
            pings++;
            if (!(await pong())) missed.push(Date.now());
            return /PHP pool discover-b freed: SIGKILL to stuck workers/.test(await lines());
          },
          90_000,
          250,
        );
        assert.notEqual(freed, null, `the exhausted pool freed:\n${await lines()}`);
      } finally {
        stop.abort();
        await Promise.all(requests);
      }
      assert.ok(pings > 20, `the first pool was pinged throughout (${pings})`);
      assert.deepEqual(missed, [], "the first pool answered every ping meanwhile");
      assert.equal(await fpmMaster(), master, "the master was kept: no restart of the service");
      assert.notEqual(await waitFor(() => pong(SOCKET_B), 10_000, 200), null, "b answers again");
      assert.doesNotMatch(await lines(), / PHP restarted/);
      assert.match(
        await lines(),
        /PHP pool discover-b freed: .*; php8\.2-fpm was not restarted: pool discover serves\./,
      );
      const incidents = (await Deno.readTextFile(`${dir}/state/incidents.jsonl`)).trim()
        .split("\n").map((l) => JSON.parse(l) as IncidentRecord);
      assert.equal(incidents.length, 1, "one incident");
      assert.equal(incidents[0]!.poolName, "discover-b");
      assert.equal(incidents[0]!.restart?.rung, "kill_stuck");
      assert.ok(
        incidents[0]!.evidence.status?.workers.some((w) => w.script === SLEEP),
        "the evidence is the exhausted pool's status: its workers on the stuck script",
      );
      const pools = new Set(incidents[0]!.evidence.processes.map((p) => p.pool));
      assert.ok(
        pools.has("discover") && pools.has("discover-b") && pools.has("www"),
        `each worker's pool from its title: ${[...pools].join(", ")}`,
      );

      // a crash of the whole service: every pool fails, and the service is restarted
      for (const pid of await pids(FPM_PROCESS)) Deno.kill(pid, "SIGKILL");
      assert.notEqual(
        await waitFor(() => pong(), 30_000, 200),
        null,
        "restarted: the pool answers again",
      );
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
      await Deno.remove(SCRIPTS, { recursive: true }).catch(() => {});
      await sh("service", [FPM_SERVICE, "restart"]);
      await work.remove();
      await stack.healthy().catch(() => {});
      await stack.down();
    }
  },
});
