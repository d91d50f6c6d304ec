/**
 * php-fpm spoken to directly: the FastCGI probe of ping and status over a unix socket and TCP, and
 * an exhausted pool (pm = static, 2 children, a 1 s slowlog) that first gets an early warning and
 * then a restart whose incident record names the stuck script. Uses a php-fpm8.2 master of its
 * own (service php8.2-fpm-c) and removes it at the end; the system's pools are not touched.
 */
import assert from "node:assert/strict";
import parse from "parse-prometheus-text-format";
import { directFcgiGet } from "../../src/probe/fcgi.ts";
import type { IncidentRecord } from "../../src/record/incidents.ts";
import { runCli, runDir } from "../support/cli.ts";
import { ExtraPool, FPM_PROCESS, freePort, SmtpSink, waitFor } from "./stack.ts";
import { configToml, WatchProcess } from "./watch_process.ts";

const STATUS_PORT = 9073;
const SCRIPTS = "/var/www/php-relaunch-test-c";
const SLEEP = `${SCRIPTS}/sleep.php`;

const pool = new ExtraPool({
  suffix: "c",
  nginxPort: null,
  poolLines: [
    "pm = static",
    "pm.max_children = 2",
    "pm.status_path = /status",
    `pm.status_listen = 127.0.0.1:${STATUS_PORT}`,
    "ping.path = /ping",
    "slowlog = /var/log/php8.2-fpm-c.slow.log",
    "request_slowlog_timeout = 1s",
  ],
});

const PING_UNIX = `fcgi+unix://${pool.socket}/ping`;
const PING_TCP = `fcgi://127.0.0.1:${STATUS_PORT}/ping`;
const STATUS_TCP = `fcgi://127.0.0.1:${STATUS_PORT}/status`;

/** The pool's status page (JSON) over its own listener, or null when it does not answer. */
async function poolStatus(): Promise<Record<string, number> | null> {
  try {
    const r = await directFcgiGet(
      {
        address: { transport: "tcp", hostname: "127.0.0.1", port: STATUS_PORT },
        path: "/status",
        query: "json",
      },
      AbortSignal.timeout(2000),
    );
    return JSON.parse(r.body);
  } catch {
    return null;
  }
}

/** Occupies one worker with a request that sleeps `seconds`; abort() ends the wait. */
function occupy(seconds: number, stop: AbortSignal): Promise<unknown> {
  return directFcgiGet(
    { address: { transport: "unix", path: pool.socket }, path: SLEEP, query: `s=${seconds}` },
    stop,
  ).catch((err) => err);
}

Deno.test({
  name: "e2e: FastCGI probe, early warning, evidence and report against a real php-fpm pool",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const work = await runDir("fcgi-");
    const dir = work.path;
    await Deno.mkdir(SCRIPTS, { recursive: true, mode: 0o755 });
    await Deno.writeTextFile(SLEEP, "<?php sleep((int)($_GET['s'] ?? 1)); echo 'slept';\n", {
      mode: 0o644,
    });
    await Deno.chmod(SLEEP, 0o644);
    const smtp = await SmtpSink.start();
    try {
      await pool.create();
      const common = [
        "--service",
        pool.service,
        "--process-name",
        FPM_PROCESS,
        "--state-dir",
        `${dir}/once`,
        "--log-file",
      ];

      await t.step("ping and status over a unix socket and over TCP, without nginx", async () => {
        const cases: [string[], number, RegExp][] = [
          [[PING_UNIX], 0, /^200 healthy/],
          [[PING_TCP], 0, /^200 healthy/],
          [[`${STATUS_TCP}?json`, "--expect", '{"pool":"c"'], 0, /^200 healthy/],
          [[`fcgi+unix://${pool.socket}/status?json&full`, "--expect", "{"], 0, /^200 healthy/],
          // the status page is not a ping: its body is not "pong"
          [[STATUS_TCP], 4, /^unexpected misconfigured/],
          [[`fcgi+unix://${pool.socket}/var/www/none.php`], 4, /^404 misconfigured/],
          // straight to php-fpm, nobody listening means php-fpm is down, not nginx
          [["fcgi+unix:///run/php/php-relaunch-none.sock/ping"], 3, /^refused php_down/],
        ];
        for (const [args, code, out] of cases) {
          const r = await runCli(["--once", ...args, ...common, `${dir}/once.log`]);
          assert.equal(r.code, code, `${args.join(" ")}: ${r.stdout} ${r.stderr}`);
          assert.match(r.stdout, out, args.join(" "));
        }
      });

      await t.step(
        "a unix-socket pool's queued requests: the kernel's count, where php-fpm says 0",
        async () => {
          const stop = new AbortController();
          // both workers busy for a while, then three short requests wait for accept()
          const requests = Array.from({ length: 2 }, () => occupy(12, stop.signal));
          try {
            const busy = await waitFor(
              async () => (await poolStatus())?.["active processes"] === 2,
              10_000,
              100,
            );
            assert.notEqual(busy, null, "both workers taken");
            requests.push(...Array.from({ length: 3 }, () => occupy(1, stop.signal)));
            const queued = await waitFor(
              async () => {
                const out = await new Deno.Command("/usr/bin/ss", {
                  args: ["-xlH", "src", pool.socket],
                }).output();
                return /LISTEN\s+3\s/.test(new TextDecoder().decode(out.stdout));
              },
              10_000,
              100,
            );
            assert.notEqual(queued, null, "three requests wait in the socket's backlog");
            assert.equal((await poolStatus())?.["listen queue"], 0, "php-fpm's own figure");
            // the heartbeat is the status listener's ping (healthy while the pool is full), so
            // the run only reads the status page, a probe a second
            const config = `${dir}/queue.toml`;
            await Deno.writeTextFile(
              config,
              [
                "[defaults]",
                "interval = 1",
                "timeout = 2",
                "warn_listen_queue = 1",
                `[state]\ndir = "${dir}/queue-state"\nlock_dir = "${dir}"`,
                "[[target]]",
                'name = "c"',
                `url = "${PING_TCP}"`,
                `status_url = "${STATUS_TCP}"`,
                `service = "${pool.service}"`,
                `process_name = "${FPM_PROCESS}"`,
                `pid_file = "${pool.pidFile}"`,
                `fpm_config = "${pool.files.conf}"`,
                "",
              ].join("\n"),
            );
            const r = await runCli([
              "--config",
              config,
              "--run-for",
              "6",
              "--metrics-file",
              `${dir}/queue.prom`,
              "--log-file",
              `${dir}/queue.log`,
            ]);
            assert.equal(r.code, 0, r.stderr);
            const metrics = await Deno.readTextFile(`${dir}/queue.prom`);
            assert.match(metrics, /^php_relaunch_pool_listen_queue\{target="c",pool="c"\} 3$/m);
            assert.match(
              await Deno.readTextFile(`${dir}/queue.log`),
              /PHP pool warning: listen queue 3 \(limit 1, max seen 3, backlog \d+\)/,
            );
          } finally {
            stop.abort();
            await Promise.all(requests);
            // the blockers end by themselves: wait for an idle pool before the next step
            await waitFor(async () => (await poolStatus())?.["idle processes"] === 2, 60_000, 500);
          }
        },
      );

      await t.step(
        "an exhausted pool: an early warning, then only the stuck workers killed, with an incident record that names the script",
        async () => {
          const config = `${dir}/config.toml`;
          const metricsPort = freePort();
          await Deno.writeTextFile(
            config,
            configToml({
              dir,
              smtpPort: smtp.port,
              defaults: "warn_slow_requests = 1",
              targets: `
[metrics]
listen = "127.0.0.1:${metricsPort}"

[[target]]
name = "c"
url = "${PING_UNIX}"
status_url = "${STATUS_TCP}"
service = "${pool.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${pool.pidFile}"
fpm_config = "${pool.files.conf}"
rungs = ["kill_stuck", "reload", "kill"]
`,
            }),
          );
          const master = await pool.master();
          const watch = WatchProcess.start(config, `${dir}/watch.log`);
          const stop = new AbortController();
          const requests: Promise<unknown>[] = [];
          try {
            assert.ok(await watch.waitForLine(/Watching 1 targets/, 30_000), "started");
            // a few healthy rounds, so that the status counters have a baseline
            await new Promise((r) => setTimeout(r, 2500));
            // load creeps up: one worker stuck, the other still answers the heartbeat
            requests.push(occupy(300, stop.signal));
            const warning = await watch.waitForLine(/PHP pool warning: .*slow requests/, 30_000);
            assert.ok(warning, "an early warning about slow requests");
            assert.equal((await watch.lines()).filter((l) => /PHP restart/.test(l)).length, 0);
            // then the last worker is taken too: the pool is exhausted
            requests.push(occupy(300, stop.signal));
            const restarted = await watch.waitForLine(/ PHP restarted\./, 60_000);
            assert.ok(restarted, "restarted");
            assert.equal(await pool.master(), master, "the master was kept: only workers killed");
            const back = await waitFor(
              async () => {
                const r = await runCli(["--once", PING_UNIX, ...common, `${dir}/once.log`]);
                return r.code === 0;
              },
              30_000,
              500,
            );
            assert.notEqual(back, null, "ping answers again");

            const lines = (await Deno.readTextFile(`${dir}/state/incidents.jsonl`)).trim()
              .split("\n");
            assert.equal(lines.length, 1, "one incident");
            const incident = JSON.parse(lines[0]!) as IncidentRecord;
            assert.equal(incident.target, "c");
            assert.equal(incident.pool, "hung", incident.why);
            assert.equal(incident.restart?.rung, "kill_stuck", incident.restart?.steps.join("; "));
            const workers = incident.evidence.status?.workers ?? [];
            assert.ok(workers.some((w) => w.script === SLEEP), JSON.stringify(workers));
            assert.equal(incident.evidence.status?.idle, 0, "max children reached: none idle");
            assert.equal(incident.evidence.settings?.maxChildren, 2);
            assert.equal(incident.evidence.settings?.requestSlowlogTimeout, "1s");
            assert.ok(incident.evidence.processes.length >= 3, "master and workers from ps");
            assert.ok(
              incident.evidence.errorLog.some((l) => l.includes("sleep.php")),
              "php-fpm's error log tail names the slow script",
            );

            const mails = await waitFor(async () => (await smtp.messages()).length >= 2, 15_000);
            assert.notEqual(mails, null, "two mails");
            const messages = await smtp.messages();
            const subjects = messages.map((m) => m.subject);
            assert.ok(subjects.some((s) => /PHP pool warning/.test(s)), subjects.join(", "));
            const restartMail = messages.find((m) => /PHP restart \[/.test(m.subject));
            assert.ok(restartMail, subjects.join(", "));
            assert.match(restartMail.body, /Pool judged hung/);
            assert.match(restartMail.body, /sleep\.php/);
            assert.match(restartMail.body, /kill_stuck: SIGKILL to stuck workers/);
            // the /metrics endpoint, read by a Prometheus text-format parser
            const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
            const families = new Map(
              (parse(await res.text()) as {
                name: string;
                metrics: { value?: string; labels?: Record<string, string> }[];
              }[]).map((m) => [m.name, m.metrics]),
            );
            const ok = families.get("php_relaunch_restarts_total")?.find((m) =>
              m.labels?.result === "ok"
            );
            assert.deepEqual(ok?.labels, { target: "c", result: "ok" });
            assert.equal(ok?.value, "1");
            assert.equal(families.get("php_relaunch_pool_total_processes")?.[0]?.value, "2");
            assert.ok(
              Number(families.get("php_relaunch_pool_slow_requests")?.[0]?.value) >= 2,
              "php-fpm counted the two slow requests",
            );
            const other = await fetch(`http://127.0.0.1:${metricsPort}/`);
            await other.body?.cancel();
            assert.equal(other.status, 404);
            assert.equal(await watch.stop(), 0);
          } finally {
            stop.abort();
            await Promise.all(requests);
            await watch.stop();
          }
        },
      );

      await t.step("report: causes, the stuck script, and tuning hints", async () => {
        const text = await runCli(["report", "--state-dir", `${dir}/state`]);
        assert.equal(text.code, 0, text.stderr);
        assert.match(text.stdout, /1 incidents/);
        assert.match(text.stdout, /timeout, pool hung/);
        assert.match(text.stdout, new RegExp(`1  ${SLEEP}`));
        assert.match(text.stdout, /pm\.max_children: max children reached in 1 of 1 incidents/);
        const json = await runCli(["report", "--state-dir", `${dir}/state`, "--format", "json"]);
        const report = JSON.parse(json.stdout);
        assert.equal(report.incidents, 1);
        assert.equal(report.byRung.kill_stuck, 1);
      });
    } finally {
      await pool.remove();
      await smtp.stop();
      await Deno.remove(SCRIPTS, { recursive: true }).catch(() => {});
      for (const log of [pool.files.errorLog, "/var/log/php8.2-fpm-c.slow.log"]) {
        await Deno.remove(log).catch(() => {});
      }
      await work.remove();
    }
  },
});
