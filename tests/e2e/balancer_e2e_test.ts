/**
 * Drain before acting, for real: Debian's haproxy (started by the test, on a loopback port of its
 * own) balances steady requests over two nginx + php-fpm8.2 backends on loopback, A and B (each a
 * php-fpm master of the test's own, three static workers). `php-relaunch watch` watches A, with
 * A's status page on pm.status_listen. Then A hangs for 12 s: every request to its app sleeps while
 * a flag file is there, so its workers, and the ones that replace them, are all busy and its
 * heartbeat times out. HAProxy's own `check` (a TCP connect to nginx) sees nothing wrong.
 *
 * With HAProxy's agent-check on php-relaunch's agent, the requests HAProxy sends A after the agent
 * said drain (and HAProxy's next agent check, 200 ms later) all go to B: the only 5xx are those
 * already stuck in A. Without it, HAProxy sends A its share throughout, and they all fail.
 * Everything made here is removed; haproxy and the watch are ended by their pids.
 */
import assert from "node:assert/strict";
import { endChild, runDir } from "../support/cli.ts";
import {
  ExtraPool,
  FPM_PROCESS,
  freePort,
  heartbeatOf,
  listening,
  pids,
  sh,
  Stack,
  waitFor,
} from "./stack.ts";
import { WatchProcess } from "./watch_process.ts";

const DOCROOT = "/var/www/php-relaunch-balancer-e2e";
/** While this file is there, A's app sleeps (up to 30 s a request). */
const FLAG = `${DOCROOT}/hang`;
const STATUS_SOCKET = "/run/php-relaunch-ha-status.sock";
/** Requests in flight at once through HAProxy. */
const CLIENTS = 6;
/** How long A hangs. */
const HANG_MS = 12_000;

/** The app's location in a backend's vhost; `hang`: the flag it obeys ("" for none). */
function appLocation(socket: string, hang: string): string[] {
  return [
    "    location = /app.php {",
    `        root ${DOCROOT};`,
    "        include fastcgi_params;",
    "        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;",
    `        fastcgi_param PHP_RELAUNCH_HANG "${hang}";`,
    `        fastcgi_pass unix:${socket};`,
    "    }",
  ];
}

const poolA = new ExtraPool({
  suffix: "ha",
  nginxPort: 8911,
  poolLines: [
    "pm = static",
    "pm.max_children = 3",
    "pm.status_path = /status",
    `pm.status_listen = ${STATUS_SOCKET}`,
    "request_terminate_timeout = 0",
  ],
  siteLines: appLocation("/run/php/php8.2-fpm-ha.sock", FLAG),
});
const poolB = new ExtraPool({
  suffix: "hb",
  nginxPort: 8912,
  poolLines: ["pm = static", "pm.max_children = 3"],
  siteLines: appLocation("/run/php/php8.2-fpm-hb.sock", ""),
});

/** One request through HAProxy: when it began, and its status or failure. */
interface Sent {
  at: number;
  status: string;
}

const failed = (s: Sent) => !/^[234]\d\d$/.test(s.status);

/** Requests to the app through HAProxy, `CLIENTS` at a time, until `stop` (bounded anyway). */
async function load(port: number, stop: AbortSignal): Promise<Sent[]> {
  const sent: Sent[] = [];
  const client = async () => {
    for (let i = 0; i < 3000 && !stop.aborted; i++) {
      const at = Date.now();
      sent.push({ at, status: await heartbeatOf(`http://127.0.0.1:${port}/app.php`, 5000) });
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, client));
  return sent;
}

/** haproxy in the foreground (-db), its configuration and output in `dir`; ended by its pid. */
class Haproxy {
  private constructor(readonly child: Deno.ChildProcess, readonly port: number) {}

  static async start(dir: string, agentPort: number | null): Promise<Haproxy> {
    const port = freePort();
    const agent = agentPort === null
      ? ""
      : ` agent-check agent-addr 127.0.0.1 agent-port ${agentPort} agent-inter 200ms`;
    await Deno.writeTextFile(
      `${dir}/haproxy.cfg`,
      [
        "global",
        "    maxconn 256",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 10s",
        "    timeout server 2s",
        "frontend web",
        `    bind 127.0.0.1:${port}`,
        "    default_backend php",
        "backend php",
        "    balance roundrobin",
        `    server a 127.0.0.1:${poolA.options.nginxPort} check${agent}`,
        `    server b 127.0.0.1:${poolB.options.nginxPort} check`,
        "",
      ].join("\n"),
    );
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        `exec /usr/sbin/haproxy -f "$1/haproxy.cfg" -db >"$1/haproxy.log" 2>&1`,
        "sh",
        dir,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const proxy = new Haproxy(child, port);
    if (!await listening(port, 10_000)) {
      await proxy.stop();
      throw new Error(`haproxy did not listen: ${await Deno.readTextFile(`${dir}/haproxy.log`)}`);
    }
    return proxy;
  }

  async stop(): Promise<void> {
    await endChild(this.child, 5000);
  }
}

/** The watch's configuration: A, its status page, and the agent when `agentPort` is set. */
function watchConfig(dir: string, agentPort: number | null): string {
  return `
[defaults]
interval = 0.5
timeout = 1
grace_period = 2
start_timeout = 3
stuck_after = 1
rungs = ["kill_stuck", "reload", "restart", "kill"]

[log]
file = "${dir}/watch.log"
format = "json"

[state]
dir = "${dir}/state"
lock_dir = "${dir}"
${agentPort === null ? "" : `\n[balancer]\nagent_listen = "127.0.0.1:${agentPort}"\n`}
[[target]]
name = "ha"
url = "${poolA.heartbeat}"
status_url = "fcgi+unix://${STATUS_SOCKET}/status"
service = "${poolA.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${poolA.pidFile}"
fpm_config = "${poolA.files.conf}"
`;
}

/** When a JSON log line was written, in ms. */
function timeOf(line: string): number {
  return Date.parse((JSON.parse(line) as { time: string }).time);
}

/** One run of the scenario: every request sent, when the hang began and ended, the drain. */
async function scenario(withAgent: boolean) {
  const work = await runDir(withAgent ? "agent-" : "no-agent-");
  const agentPort = withAgent ? freePort() : null;
  let watch: WatchProcess | null = null;
  let proxy: Haproxy | null = null;
  const stop = new AbortController();
  let loading: Promise<Sent[]> | null = null;
  try {
    await Deno.writeTextFile(`${work.path}/config.toml`, watchConfig(work.path, agentPort));
    watch = WatchProcess.start(`${work.path}/config.toml`, `${work.path}/watch.log`);
    assert.ok(
      await watch.waitForLine(/Watching 1 targets/, 30_000),
      (await watch.lines()).join("\n"),
    );
    if (withAgent) assert.ok(await watch.waitForLine(/agent-check on 127\.0\.0\.1/, 5000));
    proxy = await Haproxy.start(work.path, agentPort);
    const port = proxy.port;
    const served = await waitFor(
      async () => (await heartbeatOf(`http://127.0.0.1:${port}/app.php`)) === "200",
      10_000,
    );
    assert.notEqual(served, null, "HAProxy serves the app");

    loading = load(port, stop.signal);
    await new Promise((r) => setTimeout(r, 3000));
    const hangAt = Date.now();
    await Deno.writeTextFile(FLAG, "");
    await new Promise((r) => setTimeout(r, HANG_MS));
    await Deno.remove(FLAG);
    const hangEnd = Date.now();
    // A answers again, and the agent (when there is one) says up: A takes its share again
    const back = await waitFor(
      async () => (await heartbeatOf(poolA.heartbeat, 1000)) === "200",
      30_000,
      200,
    );
    assert.notEqual(back, null, "A answers again");
    if (withAgent) {
      const up = await waitFor(
        async () =>
          (await watch!.lines()).some((l) => /HAProxy agent: up/.test(l) && timeOf(l) >= hangAt),
        30_000,
        200,
      );
      assert.notEqual(up, null, (await watch.lines()).slice(-10).join("\n"));
    }
    await new Promise((r) => setTimeout(r, 2000));
    stop.abort();
    const sent = await loading;
    loading = null;
    const lines = await watch.lines();
    // the hang's drain: a busy moment of the warm-up may have drained (saturated) before it; one
    // still in effect when the hang began counts from the hang
    const said = lines.filter((l) => /HAProxy agent: (drain|up)/.test(l));
    const before = said.filter((l) => timeOf(l) < hangAt).at(-1);
    const after = said.find((l) => /HAProxy agent: drain/.test(l) && timeOf(l) >= hangAt);
    const drainAt = before !== undefined && /HAProxy agent: drain/.test(before)
      ? hangAt
      : after === undefined
      ? null
      : timeOf(after);
    return {
      sent,
      hangAt,
      hangEnd,
      drainAt,
      lines,
    };
  } finally {
    stop.abort();
    await loading?.catch(() => []);
    await Deno.remove(FLAG).catch(() => {});
    await proxy?.stop();
    if (watch !== null) await watch.stop();
    await work.remove();
  }
}

Deno.test({
  name:
    "e2e: HAProxy's agent-check drains a hung backend: its clients see no 5xx beyond the requests already stuck; without it, many",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await Deno.stat("/usr/sbin/haproxy").catch(() => {
      throw new Error(
        "/usr/sbin/haproxy is missing: apt-get install haproxy (scripts/test.sh does)",
      );
    });
    const stack = await Stack.up();
    try {
      await Deno.mkdir(DOCROOT, { recursive: true, mode: 0o755 });
      await Deno.chmod(DOCROOT, 0o755);
      await Deno.writeTextFile(
        `${DOCROOT}/app.php`,
        [
          "<?php",
          "$flag = $_SERVER['PHP_RELAUNCH_HANG'] ?? '';",
          "for ($i = 0; $i < 300 && $flag !== '' && file_exists($flag); $i++) usleep(100000);",
          "echo 'ok';",
          "",
        ].join("\n"),
      );
      await Deno.chmod(`${DOCROOT}/app.php`, 0o644);
      await poolA.create();
      await poolB.create();

      const agent = await scenario(true);
      const all = agent.sent.filter((s) => s.at >= agent.hangAt);
      const fails = all.filter(failed);
      assert.notEqual(agent.drainAt, null, agent.lines.slice(-20).join("\n"));
      const drainAt = agent.drainAt!;
      // HAProxy asks every 200 ms; a second is more than enough for it to have heard
      const afterDrain = fails.filter((s) => s.at > drainAt + 1000);
      const summary =
        `with the agent: ${fails.length} failed of ${all.length} sent since the hang; drain ${
          drainAt - agent.hangAt
        } ms after it; ${afterDrain.length} failed among those sent after the drain: ${
          afterDrain.map((s) => `${s.status}@${s.at - agent.hangAt}`).join(", ")
        }`;
      // deno-lint-ignore no-console -- the 5xx counts are figures worth seeing in CI output
      console.log(summary);
      assert.ok(afterDrain.length <= 2, summary);
      assert.ok(drainAt - agent.hangAt < 8000, summary);

      // A ready again, then the same without the agent
      await waitFor(async () => (await heartbeatOf(poolA.heartbeat, 1000)) === "200", 30_000);
      const plain = await scenario(false);
      const plainAll = plain.sent.filter((s) => s.at >= plain.hangAt);
      const plainFails = plainAll.filter(failed);
      const plainSummary =
        `without the agent: ${plainFails.length} failed of ${plainAll.length} sent since the hang`;
      // deno-lint-ignore no-console -- the 5xx counts are figures worth seeing in CI output
      console.log(plainSummary);
      assert.ok(
        plainFails.length >= 10 && plainFails.length >= 2 * fails.length,
        `${plainSummary}; ${summary}`,
      );
    } finally {
      await poolA.remove();
      await poolB.remove();
      await Deno.remove(STATUS_SOCKET).catch(() => {});
      await Deno.remove(DOCROOT, { recursive: true }).catch(() => {});
      if ((await pids("nginx")).length > 0) await sh("service", ["nginx", "reload"]);
      await stack.down();
    }
  },
});
