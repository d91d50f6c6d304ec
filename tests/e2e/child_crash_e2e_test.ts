/**
 * Child crash loops, for real: a php-fpm8.2 master of the test's own (service php8.2-fpm-crash,
 * its own error log) behind nginx on 127.0.0.1:8895, where /crash.php makes its worker send
 * itself SIGSEGV. Requested in a loop, the watch mode sends one alert naming the signal, the pool
 * and the page within 30 s of the loop's start, records one incident of kind child_crashes,
 * counts the deaths in php_relaunch_child_deaths_total, and restarts nothing: the master stays.
 */
import assert from "node:assert/strict";
import type { IncidentRecord } from "../../src/record/incidents.ts";
import { runDir } from "../support/cli.ts";
import { ExtraPool, FPM_PROCESS, freePort, SmtpSink, Stack, waitFor } from "./stack.ts";
import { WatchProcess, writeConfigToml } from "./watch_process.ts";

const SCRIPTS = "/var/www/php-relaunch-test-crash";
const PORT = 8895;
const SOCKET = "/run/php/php8.2-fpm-crash.sock";

const pool = new ExtraPool({
  suffix: "crash",
  nginxPort: PORT,
  // no core files on the host's disk: the signal is what counts
  poolLines: ["pm = static", "pm.max_children = 2", "rlimit_core = 0"],
  siteLines: [
    "    location = /crash.php {",
    "        include fastcgi_params;",
    `        fastcgi_param SCRIPT_FILENAME ${SCRIPTS}/crash.php;`,
    `        fastcgi_pass unix:${SOCKET};`,
    "    }",
  ],
});

/** One request of the crashing page: its status, or the failure. */
async function crashPage(): Promise<string> {
  try {
    const r = await fetch(`http://127.0.0.1:${PORT}/crash.php`, {
      signal: AbortSignal.timeout(2000),
    });
    await r.body?.cancel();
    return String(r.status);
  } catch (err) {
    return String(err);
  }
}

async function metrics(port: number): Promise<string> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/metrics`, {
      signal: AbortSignal.timeout(2000),
    });
    return await r.text();
  } catch {
    return "";
  }
}

Deno.test({
  name:
    "e2e: a page that crashes its worker with SIGSEGV: one alert naming signal, pool and page; no restart",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const stack = await Stack.up();
    const smtp = await SmtpSink.start();
    const work = await runDir("crash-");
    const dir = work.path;
    let watch: WatchProcess | null = null;
    let looping = true;
    try {
      await Deno.mkdir(SCRIPTS, { recursive: true, mode: 0o755 });
      await Deno.writeTextFile(
        `${SCRIPTS}/crash.php`,
        "<?php posix_kill(posix_getpid(), 11); echo 'still alive';\n",
      );
      await Deno.chmod(`${SCRIPTS}/crash.php`, 0o644);
      await pool.create();
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
name = "crash"
url = "${pool.heartbeat}"
service = "${pool.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${pool.pidFile}"
fpm_config = "${pool.files.conf}"
`,
      });
      watch = WatchProcess.start(config, `${dir}/watch.log`);
      // its first step has read where php-fpm's error log ends: what follows is news
      assert.notEqual(
        await waitFor(
          async () => /php_relaunch_probes_total\{target="crash"/.test(await metrics(metricsPort)),
          30_000,
          200,
        ),
        null,
        "the watch probes",
      );

      const start = Date.now();
      const answers: string[] = [];
      const loop = (async () => {
        // bounded: 60 s at most, whatever happens
        while (looping && Date.now() - start < 60_000) {
          answers.push(await crashPage());
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const alerted = await waitFor(
        async () => (await smtp.messages()).some((m) => /PHP children crashing/.test(m.subject)),
        30_000,
        100,
      );
      assert.notEqual(alerted, null, `an alert within 30 s; answers ${answers.slice(0, 5)}`);
      assert.ok(answers.includes("502"), `nginx answered 502: ${answers.slice(0, 5)}`);
      // the loop goes on a little: still one alert
      await new Promise((r) => setTimeout(r, 3000));
      looping = false;
      await loop;

      const mails = (await smtp.messages()).filter((m) => /PHP children crashing/.test(m.subject));
      assert.equal(mails.length, 1, mails.map((m) => m.subject).join("\n"));
      // quoted-printable's soft line breaks
      const body = mails[0]!.body.replace(/=\r?\n/g, "");
      assert.match(
        body,
        /PHP pool crash: \d+ children crashed within \d+ s \(signal 11 \(SIGSEGV\) \d+\)/,
      );
      assert.match(body, /php-fpm was not restarted/);
      assert.match(body, /\n +\d+ {2}GET \/crash\.php\n/, body);
      assert.match(body, /\(crash, child_crashes, firing\)/);

      const incidents = (await Deno.readTextFile(`${dir}/state/incidents.jsonl`)).trim()
        .split("\n").map((l) => JSON.parse(l) as IncidentRecord);
      assert.equal(incidents.length, 1, "one incident");
      assert.equal(incidents[0]!.kind, "child_crashes");
      assert.equal(incidents[0]!.poolName, "crash");
      assert.ok((incidents[0]!.childCrashes?.signals["SIGSEGV"] ?? 0) >= 5);

      const text = await metrics(metricsPort);
      const deaths = Number(
        /^php_relaunch_child_deaths_total\{target="crash",pool="crash",signal="SIGSEGV"\} (\d+)$/m
          .exec(text)?.[1] ?? "0",
      );
      assert.ok(deaths >= 5, `the counter: ${deaths}`);

      assert.equal(await pool.master(), master, "the same master: php-fpm was not restarted");
      const log = (await watch.lines()).join("\n");
      assert.doesNotMatch(log, /PHP restarted|restart failed|SIGKILL/, log);
      assert.ok(
        !(await smtp.messages()).some((m) => /PHP restart/.test(m.subject)),
        "no restart alert",
      );
    } finally {
      looping = false;
      await watch?.stop();
      await pool.remove();
      await Deno.remove(pool.files.errorLog).catch(() => {});
      await Deno.remove(SCRIPTS, { recursive: true }).catch(() => {});
      await smtp.stop();
      await stack.healthy().catch(() => {});
      await stack.down();
      await work.remove();
    }
  },
});
