/**
 * End to end against Debian's nginx and php8.2-fpm (restarted through the real `service` init
 * script), the repo's nginx samples, and a real SMTP server. Changes system state, so the steps
 * run one after another and the stack restores everything at the end.
 */
import assert from "node:assert/strict";
import parse from "parse-prometheus-text-format";
import { ROOT, runCli, runDir, startCommand } from "../support/cli.ts";
import {
  ALLOW_CONF,
  FPM_PROCESS,
  fpmMaster,
  HEARTBEAT,
  heartbeat,
  pids,
  sh,
  SmtpSink,
  Stack,
  waitFor,
} from "./stack.ts";

const RECIPIENTS = "ops@example.com,oncall@example.net";

async function logLines(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter((l) => l.trim() !== "");
}

/** Whether some process holds a flock on `path` (read from /proc/locks, without taking it). */
async function lockHeld(path: string): Promise<boolean> {
  const ino = await Deno.stat(path).then((s) => s.ino).catch(() => null);
  if (ino === null) return false;
  const locks = await Deno.readTextFile("/proc/locks");
  return locks.split("\n").some((l) => /FLOCK/.test(l) && l.includes(`:${ino} `));
}

Deno.test({
  name: "e2e: real nginx + php8.2-fpm + SMTP",
  // aiosmtpd and services outlive single steps; each step cleans up what it started
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stack = await Stack.up();
    const smtp = await SmtpSink.start();
    const work = await runDir("cron-");
    const dir = work.path;
    let n = 0;
    const files = () => {
      n++;
      return { log: `${dir}/run${n}.log`, lock: `${dir}/run${n}.lock`, state: `${dir}/state${n}` };
    };
    const common = (f: { log: string; lock: string; state: string }) => [
      "--smtp-host",
      "127.0.0.1",
      "--smtp-port",
      String(smtp.port),
      "--mail-from",
      "php-relaunch@example.org",
      "--log-file",
      f.log,
      "--lock-file",
      f.lock,
      "--state-dir",
      f.state,
    ];
    try {
      await t.step(
        "a. SIGKILL of every php-fpm process: restarted, 200 within timeout + 10 s, one mail, one log line",
        async () => {
          await stack.healthy();
          const before = await fpmMaster();
          const f = files();
          // cron runs have been watching: the state knows the master (from the process table)
          const watching = await runCli([
            HEARTBEAT,
            "5",
            RECIPIENTS,
            "--run-for",
            "5",
            ...common(f),
          ]);
          assert.equal(watching.code, 0, watching.stderr);
          await Deno.remove(f.log);
          const mailsBefore = (await smtp.messages()).length;
          const killedAt = Date.now();
          for (const pid of await pids(FPM_PROCESS)) Deno.kill(pid, "SIGKILL");
          // the cron form; --run-for 10 ends the run right after the restart's settle time
          const metrics = `${f.state}.prom`;
          const run = runCli([
            HEARTBEAT,
            "5",
            RECIPIENTS,
            "--run-for",
            "10",
            "--metrics-file",
            metrics,
            ...common(f),
          ]);
          const recovered = await waitFor(async () => (await heartbeat(1000)) === "200", 30_000);
          const r = await run;
          assert.equal(r.code, 0, r.stderr);
          assert.notEqual(recovered, null, "the heartbeat answers again");
          assert.ok(recovered! <= 15_000, `200 again ${recovered} ms after the kill (bound 15000)`);
          const after = await fpmMaster();
          assert.ok(after !== null && after !== before, `new master ${after}, old ${before}`);
          const lines = await logLines(f.log);
          assert.equal(lines.length, 1, lines.join("\n"));
          assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S+ 502 PHP restarted\.$/);
          await waitFor(async () => (await smtp.messages()).length > mailsBefore, 10_000);
          const mails = (await smtp.messages()).slice(mailsBefore);
          assert.equal(mails.length, 1);
          assert.match(mails[0]!.subject, /^\S+ PHP restart \[\S+ #\d{8}-\d{6}-\d{3}\]$/);
          assert.deepEqual(mails[0]!.rcptTo.sort(), RECIPIENTS.split(",").sort());
          assert.equal(mails[0]!.mailFrom, "php-relaunch@example.org");
          assert.match(mails[0]!.body, /502 PHP restarted\./);
          // the node_exporter textfile, read by a Prometheus text-format parser
          const families = new Map(
            (parse(await Deno.readTextFile(metrics)) as {
              name: string;
              metrics: { value?: string; labels?: Record<string, string> }[];
            }[]).map((m) => [m.name, m.metrics]),
          );
          const restarts = families.get("php_relaunch_restarts_total") ?? [];
          assert.equal(restarts.find((m) => m.labels?.result === "ok")?.value, "1");
          assert.equal(restarts.find((m) => m.labels?.result === "failed")?.value, "0");
          const php502 = (families.get("php_relaunch_probes_total") ?? []).find((m) =>
            m.labels?.verdict === "php_down" && m.labels?.answer === "502"
          );
          // every process killed: the master is gone, a certain crash, restarted without the
          // confirming probe a 502 alone would need
          assert.equal(php502?.value, "1", "one 502, no confirmation");
          assert.match(
            mails[0]!.body.replace(/=\n/g, ""),
            /Certain crash: master \d+ is (gone|a zombie) and no other php-fpm8\.2 master of \/etc\/php\/8\.2\/fpm\/php-fpm\.conf runs/,
          );
          const lastRestart = Number(
            families.get("php_relaunch_last_restart_timestamp_seconds")?.[0]?.value,
          );
          assert.ok(lastRestart * 1000 >= killedAt && lastRestart * 1000 <= Date.now());
          // deno-lint-ignore no-console -- the recovery time is a figure worth seeing in CI output
          console.log(
            `  SIGKILL: 200 again after ${recovered} ms (${Date.now() - killedAt} ms wall)`,
          );
        },
      );

      await t.step(
        "b. SIGSTOP of every php-fpm process: restarted within 2 x timeout + 10 s",
        async () => {
          await stack.healthy();
          const f = files();
          const stopped = await pids(FPM_PROCESS);
          for (const pid of stopped) Deno.kill(pid, "SIGSTOP");
          try {
            const run = runCli([HEARTBEAT, "3", "", "--run-for", "6", ...common(f)]);
            const recovered = await waitFor(
              async () => (await heartbeat(500)) === "200",
              40_000,
              200,
            );
            const r = await run;
            assert.equal(r.code, 0, r.stderr);
            assert.notEqual(recovered, null);
            assert.ok(recovered! <= 16_000, `200 again after ${recovered} ms (bound 16000)`);
            assert.match((await logLines(f.log))[0] ?? "", / timeout PHP restarted\.$/);
            for (const pid of stopped) {
              assert.ok(!(await pids(FPM_PROCESS)).includes(pid), `stopped pid ${pid} is gone`);
            }
            // deno-lint-ignore no-console -- the recovery time is a figure worth seeing in CI output
            console.log(`  SIGSTOP: 200 again after ${recovered} ms`);
          } finally {
            for (const pid of stopped) {
              try {
                Deno.kill(pid, "SIGCONT");
              } catch { /* killed by the watchdog */ }
            }
          }
        },
      );

      await t.step(
        "c. nginx stopped: php-fpm not restarted, exit 7, the log says why",
        async () => {
          await stack.healthy();
          const master = await fpmMaster();
          const f = files();
          await sh("service", ["nginx", "stop"]);
          try {
            const r = await runCli([HEARTBEAT, "5", "", ...common(f)]);
            assert.equal(r.code, 7, r.stderr);
            assert.equal(await fpmMaster(), master, "same php-fpm master");
            const lines = await logLines(f.log);
            assert.equal(lines.length, 1);
            assert.match(lines[0]!, /refused PHP not restarted: .*nginx or the address is down/);
          } finally {
            await sh("service", ["nginx", "start"]);
          }
        },
      );

      await t.step(
        "d. heartbeat denied with 444: not restarted, exit 4, the log says why",
        async () => {
          await stack.healthy();
          const master = await fpmMaster();
          const f = files();
          const original = await Deno.readTextFile(ALLOW_CONF);
          assert.match(original, /^\s*127\.0\.0\.1 0;/m, "the sample allows 127.0.0.1");
          try {
            await Deno.writeTextFile(ALLOW_CONF, original.replace(/^\s*127\.0\.0\.1 0;$/m, ""));
            await sh("service", ["nginx", "reload"]);
            const denied = await waitFor(
              async () => (await heartbeat(1000)) === "error",
              15_000,
              200,
            );
            assert.notEqual(denied, null, "nginx now closes the connection");
            const r = await runCli([HEARTBEAT, "5", "", ...common(f)]);
            assert.equal(r.code, 4, r.stderr);
            assert.equal(await fpmMaster(), master, "same php-fpm master");
            assert.match((await logLines(f.log))[0] ?? "", /closed PHP not restarted: .*444/);
          } finally {
            await Deno.writeTextFile(ALLOW_CONF, original);
            await sh("service", ["nginx", "reload"]);
          }
        },
      );

      await t.step(
        "e. a second cron run during a run waits for it, never past its own period",
        async () => {
          await stack.healthy();
          const f = files();
          const [cmd, args] = startCommand([HEARTBEAT, "5", "", "--run-for", "10", ...common(f)]);
          const first = new Deno.Command(cmd, {
            args,
            cwd: ROOT,
            stdin: "null",
            stdout: "null",
            stderr: "null",
          }).spawn();
          try {
            const held = await waitFor(() => lockHeld(f.lock), 30_000);
            assert.notEqual(held, null, "the first run took the lock");
            const master = await fpmMaster();
            const second = await runCli([HEARTBEAT, "5", "", "--run-for", "10", ...common(f)]);
            assert.equal(second.code, 0, second.stderr);
            // its own 10 s period, plus Deno's start-up; never the first run's and its own
            assert.ok(second.ms < 18_000, `second run took ${second.ms} ms`);
            assert.equal(await fpmMaster(), master);
            const lines = await logLines(f.log);
            assert.match(lines[0]!, /Another run holds .*; waiting for it\./);
            assert.ok(lines.every((l) => !/PHP restart/.test(l)), lines.join("\n"));
            assert.equal((await first.status).code, 0);
          } finally {
            try {
              first.kill("SIGKILL");
            } catch { /* exited */ }
            await first.status;
          }
        },
      );

      await t.step(
        "g. paused for a deploy: a crash is left alone, no mail; resumed: restarted",
        async () => {
          await stack.healthy();
          const f = files();
          const mailsBefore = (await smtp.messages()).length;
          const run = (...args: string[]) => runCli([...args, ...common(f)]);
          const paused = await run("pause", "php8.2-fpm", "--for", "5m", "--reason", "deploy");
          assert.equal(paused.code, 0, paused.stderr);
          for (const pid of await pids(FPM_PROCESS)) Deno.kill(pid, "SIGKILL");
          const during = await run(HEARTBEAT, "5", RECIPIENTS, "--run-for", "6");
          assert.equal(during.code, 3, "down, and left alone");
          assert.equal(await fpmMaster(), null, "not restarted while paused");
          const status = await run("status");
          assert.match(status.stdout, /paused {7}until .* deploy/);
          assert.equal((await run("resume", "php8.2-fpm")).stdout, "resumed php8.2-fpm");
          // long enough to confirm the 502: no run before it has seen php-fpm's master
          const after = await run(HEARTBEAT, "5", RECIPIENTS, "--run-for", "10");
          assert.equal(after.code, 0, `${after.stderr}\n${(await logLines(f.log)).join("\n")}`);
          assert.equal(await heartbeat(), "200");
          await waitFor(async () => (await smtp.messages()).length > mailsBefore, 10_000);
          const subjects = (await smtp.messages()).slice(mailsBefore).map((m) => m.subject);
          assert.equal(subjects.length, 1, subjects.join(", "));
          assert.match(subjects[0]!, / PHP restart \[/, "one mail: the restart, after the pause");
          const lines = await logLines(f.log);
          assert.ok(lines.some((l) => /while paused until .* \(deploy\): not acted on/.test(l)));
        },
      );

      await t.step("f. bad inputs exit 2 and touch nothing", async () => {
        await stack.healthy();
        const master = await fpmMaster();
        const mailsBefore = (await smtp.messages()).length;
        const f = files();
        for (
          const bad of [
            [],
            [HEARTBEAT, "five", RECIPIENTS],
            [HEARTBEAT, "5", "ops@"],
            ["file:///etc/passwd", "5", RECIPIENTS],
            [HEARTBEAT, "5", RECIPIENTS, "1", "extra"],
            [HEARTBEAT, "5", RECIPIENTS, "--restart-php"],
            [HEARTBEAT, "5", RECIPIENTS, "--service", "php9.9-fpm"],
          ]
        ) {
          const r = await runCli([...bad, ...common(f)]);
          assert.equal(r.code, 2, `${bad.join(" ")}: ${r.stderr}`);
          assert.equal(r.stderr.split("\n").length, 1, r.stderr);
        }
        assert.equal(await fpmMaster(), master);
        assert.equal((await smtp.messages()).length, mailsBefore);
        assert.deepEqual(await logLines(f.log), []);
        assert.equal(await heartbeat(), "200");
      });
    } finally {
      await smtp.stop();
      await work.remove();
      await stack.healthy().catch(() => {});
      await stack.down();
    }
  },
});
