/**
 * An upstream that stops answering, for real: a php-fpm8.2 master of the test's own (service
 * php8.2-fpm-up, 4 static workers, its status page on pm.status_listen) whose script reads from a
 * listener that accepts and never answers (a Deno.listen in the test: on 127.0.0.1, then on a unix
 * socket, which ss names only by the listening end's path), under
 * steady load through nginx, with `php-relaunch watch` running. Every worker blocks on the
 * listener; the heartbeat times out. Expected: one alert naming the listener's address, at most
 * one kill round, no restart of php-fpm (its master is the same throughout), the incident record
 * and the metric; then the listener closes its connections, the workers finish, and the incident
 * is resolved. The pool, its vhost and its script are removed at the end.
 */
import assert from "node:assert/strict";
import type { IncidentRecord } from "../../src/record/incidents.ts";
import { runDir } from "../support/cli.ts";
import {
  ExtraPool,
  FPM_PROCESS,
  freePort,
  heartbeatOf,
  must,
  pids,
  sh,
  SmtpSink,
  Stack,
  waitFor,
} from "./stack.ts";
import { WatchProcess, writeConfigToml } from "./watch_process.ts";

const STATUS_SOCKET = "/run/php-relaunch-up-status.sock";
const DOCROOT = "/var/www/php-relaunch-upstream-e2e";
const SITE = "/etc/nginx/sites-enabled/php-relaunch-upstream-e2e";
const LOAD_PORT = 8897;
/** Requests in flight at once: twice the pool, so that some always wait in its queue. */
const CLIENTS = 8;

const pool = new ExtraPool({
  suffix: "up",
  nginxPort: 8896,
  poolLines: [
    "pm = static",
    "pm.max_children = 4",
    "pm.status_path = /status",
    `pm.status_listen = ${STATUS_SOCKET}`,
    "request_terminate_timeout = 0",
  ],
});

/** The silent database's unix socket, in a folder of root's that www-data may enter. */
const DB_SOCKET = "/run/php-relaunch-up-db.sock";

/**
 * A "database" that accepts and never answers, until `close()`: on a loopback TCP port, or on a
 * unix socket. `address` is how ss names it; `connect` is PHP's way to it.
 */
class SilentPeer {
  readonly conns: Deno.Conn[] = [];
  readonly address: string;
  readonly connect: string;
  private readonly listener: Deno.Listener;
  private readonly accepting: Promise<void>;

  constructor(transport: "tcp" | "unix") {
    const listener = transport === "tcp"
      ? Deno.listen({ hostname: "127.0.0.1", port: freePort() })
      : Deno.listen({ transport: "unix", path: DB_SOCKET });
    if (transport === "unix") Deno.chmodSync(DB_SOCKET, 0o666);
    const port = listener.addr.transport === "tcp" ? listener.addr.port : 0;
    this.address = transport === "tcp" ? `127.0.0.1:${port}` : DB_SOCKET;
    this.connect = transport === "tcp"
      ? `@fsockopen('127.0.0.1', ${port}, $errno, $errstr, 5)`
      : `@stream_socket_client('unix://${DB_SOCKET}', $errno, $errstr, 5)`;
    this.listener = listener;
    this.accepting = (async () => {
      try {
        for await (const conn of listener) this.conns.push(conn);
      } catch { /* closed */ }
    })();
  }

  /** Closes every connection it holds and stops listening: the workers' reads end. */
  async close(): Promise<void> {
    try {
      this.listener.close();
    } catch { /* closed */ }
    for (const c of this.conns.splice(0)) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await this.accepting;
  }
}

/** Requests to the script through nginx, `CLIENTS` at a time, until `stop` (bounded anyway). */
function load(stop: AbortSignal): Promise<number> {
  let sent = 0;
  const client = async () => {
    for (let i = 0; i < 2000 && !stop.aborted; i++) {
      sent++;
      await heartbeatOf(`http://127.0.0.1:${LOAD_PORT}/db.php`, 1500);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return Promise.all(Array.from({ length: CLIENTS }, client)).then(() => sent);
}

/**
 * The scenario, with the silent peer on `transport`: the alert names it, the hold holds, the
 * incident and the metric carry it, and its end ends the incident.
 */
async function blockedOn(transport: "tcp" | "unix"): Promise<void> {
  const work = await runDir("upstream-");
  const dir = work.path;
  const stack = await Stack.up();
  const smtp = await SmtpSink.start();
  const peer = new SilentPeer(transport);
  const stop = new AbortController();
  let watch: WatchProcess | null = null;
  let loading: Promise<number> | null = null;
  try {
    await Deno.mkdir(DOCROOT, { recursive: true, mode: 0o755 });
    await Deno.chmod(DOCROOT, 0o755);
    await Deno.writeTextFile(
      `${DOCROOT}/db.php`,
      [
        "<?php",
        `$fp = ${peer.connect};`,
        "if (!$fp) { echo 'down'; exit; }",
        "stream_set_timeout($fp, 600);",
        'fwrite($fp, "SELECT 1\\n");',
        "$line = fgets($fp);",
        "echo $line === false ? 'closed' : $line;",
        "",
      ].join("\n"),
    );
    await Deno.chmod(`${DOCROOT}/db.php`, 0o644);
    await pool.create();
    await Deno.writeTextFile(
      SITE,
      [
        "server {",
        `    listen 127.0.0.1:${LOAD_PORT};`,
        "    access_log off;",
        `    root ${DOCROOT};`,
        "    location = /db.php {",
        "        include fastcgi_params;",
        "        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;",
        `        fastcgi_pass unix:${pool.socket};`,
        "    }",
        "}",
        "",
      ].join("\n"),
    );
    await must("service", ["nginx", "reload"]);
    const master = await pool.master();
    assert.notEqual(master, null, "the pool runs");

    const metricsPort = freePort();
    const config = await writeConfigToml({
      dir,
      smtpPort: smtp.port,
      targets: `
[metrics]
listen = "127.0.0.1:${metricsPort}"

[[target]]
name = "up"
url = "${pool.heartbeat}"
status_url = "fcgi+unix://${STATUS_SOCKET}/status"
service = "${pool.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${pool.pidFile}"
fpm_config = "${pool.files.conf}"
stuck_after = 2
rungs = ["kill_stuck", "reload", "restart", "kill"]
`,
    });
    watch = WatchProcess.start(config, `${dir}/watch.log`);
    assert.ok(await watch.waitForLine(/Watching 1 targets/, 30_000), "started");
    const before = await waitFor(
      async () => (await heartbeatOf(pool.heartbeat)) === "200",
      10_000,
    );
    assert.notEqual(before, null, "healthy before the load");

    loading = load(stop.signal);
    const alerted = await watch.waitForLine(/PHP upstream: /, 60_000);
    assert.ok(alerted, (await watch.lines()).slice(-20).join("\n"));
    const address = peer.address;
    assert.ok(alerted.includes(`blocked on ${address}`), alerted);
    assert.match(alerted, /php-fpm restarts cannot help/);
    // the incident lasts: the watch keeps probing, and must not restart in a loop
    await new Promise((r) => setTimeout(r, 15_000));
    assert.equal(await heartbeatOf(pool.heartbeat, 2000), "timeout", "still down meanwhile");

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const gauge = new RegExp(
      `^php_relaunch_pool_upstream_waits\\{target="up",pool="up",peer="${
        RegExp.escape(address)
      }"\\} (\\d+)$`,
      "m",
    ).exec(metrics);
    assert.ok(
      gauge !== null && Number(gauge[1]) >= 2,
      metrics.split("\n").filter((l) => /upstream/.test(l)).join("\n"),
    );

    const held = await watch.lines();
    assert.equal(held.filter((l) => / PHP upstream: /.test(l)).length, 1, "told once");
    assert.ok(held.filter((l) => /kill round /.test(l)).length <= 1, "at most one kill round");
    assert.deepEqual(
      held.filter((l) => /PHP restart|relaunching|given up|SIGUSR2|SIGQUIT/.test(l)),
      [],
      "no restart, no reload, no giving up",
    );
    assert.equal(await pool.master(), master, "php-fpm's master was never replaced");

    const records = (await Deno.readTextFile(`${dir}/state/incidents.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l) as IncidentRecord);
    assert.equal(records.length, 1, "one record: the incident's kill round");
    assert.equal(records[0]?.evidence.upstream?.peer, address);
    assert.ok((records[0]?.evidence.upstream?.blocked ?? 0) >= 2);

    // the upstream answers again (its connections end): the workers finish, the pool recovers
    await peer.close();
    const recovered = await watch.waitForLine(/PHP recovered/, 30_000);
    assert.ok(recovered, (await watch.lines()).slice(-10).join("\n"));
    stop.abort();
    await loading;
    loading = null;

    const mails = await waitFor(async () => (await smtp.messages()).length >= 2, 15_000);
    assert.notEqual(mails, null, "two mails");
    const subjects = (await smtp.messages()).map((m) => m.subject);
    assert.equal(
      subjects.filter((s) => /PHP upstream blocked/.test(s)).length,
      1,
      subjects.join(", "),
    );
    assert.equal(subjects.filter((s) => /PHP recovered/.test(s)).length, 1, subjects.join(", "));
    assert.equal(subjects.filter((s) => /PHP restart/.test(s)).length, 0, subjects.join(", "));
    const alert = (await smtp.messages()).find((m) => /PHP upstream blocked/.test(m.subject));
    // quoted-printable: its soft line breaks fall anywhere
    const body = (alert?.body ?? "").replaceAll(/=\r?\n/g, "");
    assert.match(body, new RegExp(`Upstream: ${RegExp.escape(address)}\n`));
    assert.equal(await pool.master(), master, "the same master throughout");
  } finally {
    stop.abort();
    await loading?.catch(() => 0);
    if (watch !== null) await watch.stop();
    await peer.close();
    await Deno.remove(SITE).catch(() => {});
    await pool.remove();
    await Deno.remove(STATUS_SOCKET).catch(() => {});
    await Deno.remove(DOCROOT, { recursive: true }).catch(() => {});
    if ((await pids("nginx")).length > 0) await sh("service", ["nginx", "reload"]);
    await smtp.stop();
    await stack.down();
    await work.remove();
  }
}

Deno.test({
  name:
    "e2e: every worker blocked on one TCP upstream: one alert naming it, one kill round, no restart loop; resolved when it answers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => blockedOn("tcp"),
});

Deno.test({
  name:
    "e2e: every worker blocked on one unix-socket upstream: named by its path, held, resolved when it answers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => blockedOn("unix"),
});
