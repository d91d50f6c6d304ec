/**
 * The watchdog as a black box, with the shipped permissions, against what another local user or
 * a hostile server can do without php-fpm: a named pipe for a pid file, a log folder that is not
 * root's, a status page with a 1.5 MB pool name, a mail server that trickles, hundreds of idle
 * connections to /metrics. Every run still ends in its period, nothing it keeps grows, and watch
 * mode stays up. (The attacks that need php-fpm itself are in e2e/hostile_e2e_test.ts.)
 */
import assert from "node:assert/strict";
import { concat, encodeRecord, RecordType } from "../src/probe/fcgi_protocol.ts";
import { ROOT, runCli, runDir, START_FLAGS, withServer } from "./support/cli.ts";
import { FakeResponder } from "./support/fcgi_server.ts";
import { asUser, tricklingSmtp } from "./support/hostile.ts";

const NOBODY = 65534;
const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A configuration of one target on `url`, everything of the run kept in `dir`. */
function config(dir: string, url: string, extra = "", defaults = ""): string {
  return `
[defaults]
timeout = 1
interval = 1
${defaults}

[log]
file = "${dir}/log"

[state]
dir = "${dir}/state"
lock_dir = "${dir}/locks"

[[target]]
name = "site"
url = "${url}"
service = "php8.2-fpm"
process_name = "php-fpm8.2"
${extra}
`;
}

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await runDir("hostile-");
  try {
    await fn(dir.path);
  } finally {
    await dir.remove();
  }
}

/** A folder below /run (which the shipped permissions may read) that nobody owns, for a pid file. */
async function withRunDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ dir: "/run", prefix: "php-relaunch-test-" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.chown(dir, NOBODY, NOBODY);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("hostile: a named pipe for a pid file: the run reads around it and ends in its period", async () => {
  await withDir(async (dir) => {
    await withRunDir(async (run) => {
      await withServer(() => new Response("ok"), async (base, hits) => {
        const file = `${dir}/config.toml`;
        await Deno.writeTextFile(file, config(dir, `${base}/hb`, `pid_file = "${run}/fpm.pid"`));
        const args = ["--config", file, "--run-for", "5"];
        // a first run keeps a state; then the state remembers a master, whose pid file is read
        assert.equal((await runCli(args)).code, 0);
        const statePath = `${dir}/state/site.json`;
        const state = JSON.parse(await Deno.readTextFile(statePath));
        await Deno.writeTextFile(statePath, JSON.stringify({ ...state, masterPid: 4242 }));
        // nobody, as www-data in its /run/php, puts a pipe where the pid file goes
        assert.equal(await asUser(["mkfifo", `${run}/fpm.pid`]), 0);
        const before = hits();
        const r = await runCli(args, { timeoutMs: 30_000 });
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.ms < 10_000, `the run took ${r.ms} ms`);
        assert.ok(hits() - before >= 2, "and probed");
      });
    });
  });
});

Deno.test("hostile: a log folder another user owns or can write is refused, like the state folder", async () => {
  await withDir(async (dir) => {
    await withServer(() => new Response("ok"), async (base, hits) => {
      await Deno.mkdir(`${dir}/logs`);
      await Deno.chown(`${dir}/logs`, NOBODY, NOBODY);
      const common = [
        `${base}/hb`,
        "1",
        "",
        "--service",
        "php8.2-fpm",
        "--process-name",
        "php-fpm8.2",
      ];
      const paths = ["--state-dir", `${dir}/state`, "--lock-file", `${dir}/locks/l`];
      const r = await runCli([...common, ...paths, "--log-file", `${dir}/logs/php-relaunch.log`]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /^php-relaunch: Refusing log folder ".*\/logs": it is owned by uid 65534, not root$/,
      );
      await Deno.chown(`${dir}/logs`, 0, 0);
      await Deno.chmod(`${dir}/logs`, 0o777);
      const open = await runCli([
        ...common,
        ...paths,
        "--log-file",
        `${dir}/logs/php-relaunch.log`,
      ]);
      assert.match(open.stderr, /Refusing log folder ".*\/logs": its mode 0777 lets others write/);
      assert.equal(hits(), 0, "nothing probed");
      assert.ok(!(await exists(`${dir}/logs/php-relaunch.log`)), "nothing created");
    });
  });
});

/** A FastCGI answer of any size: the body cut into records of at most 65535 bytes. */
function bigAnswer(body: string): Uint8Array {
  const bytes = new TextEncoder().encode(`Content-Type: application/json\r\n\r\n${body}`);
  const records: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += 65_535) {
    records.push(encodeRecord(RecordType.Stdout, 1, bytes.subarray(at, at + 65_535)));
  }
  records.push(encodeRecord(RecordType.Stdout, 1, new Uint8Array()));
  records.push(encodeRecord(RecordType.EndRequest, 1, new Uint8Array(8)));
  return concat(records);
}

Deno.test("hostile: a status page with a 1.5 MB pool name: the state and metrics stay small, nothing is forgotten", async () => {
  await withDir(async (dir) => {
    const page = {
      pool: "p".repeat(1_500_000),
      "process manager": "static",
      "accepted conn": 1,
      "listen queue": 0,
      "max listen queue": 0,
      "listen queue len": 0,
      "idle processes": 1,
      "active processes": 0,
      "total processes": 1,
      "max children reached": 0,
      "slow requests": 0,
    };
    const status = FakeResponder.tcp(() => ({ raw: bigAnswer(JSON.stringify(page)) }));
    try {
      await withServer(() => new Response("ok"), async (base, hits) => {
        const file = `${dir}/config.toml`;
        await Deno.writeTextFile(
          file,
          config(dir, `${base}/hb`, `status_url = "fcgi://127.0.0.1:${status.port}/status"`) +
            `\n[metrics]\nfile = "${dir}/metrics.prom"\n`,
        );
        const args = ["--config", file, "--run-for", "5"];
        for (let run = 0; run < 2; run++) assert.equal((await runCli(args)).code, 0);
        assert.ok(status.requests.length >= 2, "the status page was read");
        const state = await Deno.stat(`${dir}/state/site.json`);
        assert.ok(state.size < 64 * 1024, `state file of ${state.size} bytes`);
        assert.ok((await Deno.stat(`${dir}/metrics.prom`)).size < 64 * 1024);
        const log = await Deno.readTextFile(`${dir}/log`);
        assert.doesNotMatch(log, /starting afresh/, "the second run read the first's state");
        const saved = JSON.parse(await Deno.readTextFile(`${dir}/state/site.json`));
        assert.equal(saved.counters.probes["healthy 200"], hits(), "both runs' probes counted");
      });
    } finally {
      await status.close();
    }
  });
});

/** Queued deliveries in a state folder's outbox. */
async function outbox(dir: string): Promise<{ lastError: string }[]> {
  const names = await Array.fromAsync(Deno.readDir(`${dir}/state/outbox`), (e) => e.name)
    .catch(() => [] as string[]);
  return await Promise.all(
    names.filter((n) => n.endsWith(".json")).map(async (n) =>
      JSON.parse(await Deno.readTextFile(`${dir}/state/outbox/${n}`)) as { lastError: string }
    ),
  );
}

/** A run of the start task as a child process (to signal it, or run another beside it). */
function spawn(args: string[], opts: { prefix?: string[] } = {}): Deno.ChildProcess {
  const prefix = opts.prefix ?? [];
  return new Deno.Command(prefix[0] ?? Deno.execPath(), {
    args: [
      ...prefix.slice(1),
      ...(prefix.length > 0 ? [Deno.execPath()] : []),
      "run",
      ...START_FLAGS,
      `${ROOT}/src/main.ts`,
      ...args,
    ],
    cwd: ROOT,
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/root", RUST_BACKTRACE: "0" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

const mailTo = (port: number) =>
  `mail_to = ["ops@example.com"]\n[mail]\nsmtp_host = "127.0.0.1"\nsmtp_port = ${port}\n`;

Deno.test("hostile: a trickling mail server never keeps a cron run's lock past its period, nor a run alive past the delivery limit", async () => {
  await withDir(async (dir) => {
    const smtp = tricklingSmtp(1000);
    try {
      // 404: the heartbeat is misconfigured, which is alerted at once (and restarts nothing)
      await withServer(() => new Response("no", { status: 404 }), async (base) => {
        const file = `${dir}/config.toml`;
        await Deno.writeTextFile(file, config(dir, `${base}/hb`, "", mailTo(smtp.port)));
        const first = spawn(["--config", file, "--run-for", "5"]);
        const started = Date.now();
        for (let i = 0; i < 100 && smtp.connections() === 0; i++) await sleep(100);
        assert.equal(smtp.connections(), 1, "the first run is delivering its alert");
        // the next run, due now, finds the lock free: the first one let it go before its mail
        const second = await runCli(["--config", file, "--run-for", "5"], { timeoutMs: 30_000 });
        assert.equal(second.code, 4, second.stderr);
        const log = await Deno.readTextFile(`${dir}/log`);
        assert.doesNotMatch(log, /holds .*lock|waiting for it/, log);
        // and the first run ends at the delivery limit, its mail queued for the next run
        const status = await first.status;
        const took = Date.now() - started;
        await first.stderr.cancel();
        assert.equal(status.code, 4);
        assert.ok(took < 35_000, `the first run took ${took} ms`);
        const queued = await outbox(dir);
        assert.ok(
          queued.some((q) => /not delivered within 20 s/.test(q.lastError)),
          JSON.stringify(queued),
        );
      });
    } finally {
      await smtp.close();
    }
  });
});

Deno.test("hostile: watch mode stops and reloads at once while a trickling mail server holds a delivery", async () => {
  await withDir(async (dir) => {
    const smtp = tricklingSmtp(1000);
    try {
      await withServer(() => new Response("no", { status: 404 }), async (base, hits) => {
        const file = `${dir}/config.toml`;
        await Deno.writeTextFile(file, config(dir, `${base}/hb`, "", mailTo(smtp.port)));
        const watch = spawn(["watch", "--config", file]);
        try {
          for (let i = 0; i < 150 && smtp.connections() === 0; i++) await sleep(100);
          assert.equal(smtp.connections(), 1, "an alert is being delivered");
          // SIGHUP: the new configuration is watched at once, the delivery goes on beside it
          watch.kill("SIGHUP");
          let reloaded = false;
          for (let i = 0; i < 50 && !reloaded; i++) {
            await sleep(100);
            reloaded = /SIGHUP: configuration reloaded/.test(await Deno.readTextFile(`${dir}/log`));
          }
          assert.ok(reloaded, "reloaded");
          const probes = hits();
          await sleep(2500);
          assert.ok(hits() > probes, "probing goes on after the reload");
          const asked = Date.now();
          watch.kill("SIGTERM");
          const status = await watch.status;
          assert.equal(status.code, 0);
          assert.ok(Date.now() - asked < 5000, `stopped after ${Date.now() - asked} ms`);
          const queued = await outbox(dir);
          assert.ok(
            queued.some((q) => /before php-relaunch stopped/.test(q.lastError)),
            JSON.stringify(queued),
          );
        } finally {
          try {
            watch.kill("SIGKILL");
          } catch { /* exited */ }
          await watch.status;
          await watch.stderr.cancel().catch(() => {});
        }
      });
    } finally {
      await smtp.close();
    }
  });
});

Deno.test("hostile: hundreds of idle connections to /metrics, with few file descriptors: watch mode stays up and probing", async () => {
  await withDir(async (dir) => {
    await withServer(() => new Response("ok"), async (base, hits) => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (l.addr as Deno.NetAddr).port;
      l.close();
      const file = `${dir}/config.toml`;
      await Deno.writeTextFile(
        file,
        config(dir, `${base}/hb`) + `\n[metrics]\nlisten = "127.0.0.1:${port}"\n`,
      );
      // a small file descriptor limit, as a busy host's would be reached
      const watch = spawn(["watch", "--config", file], {
        prefix: ["/usr/bin/prlimit", "--nofile=128:128", "--"],
      });
      const idle: Deno.Conn[] = [];
      try {
        let up = false;
        for (let i = 0; i < 100 && !up; i++) {
          await sleep(100);
          up = await fetch(`http://127.0.0.1:${port}/metrics`).then(async (r) => {
            await r.body?.cancel();
            return r.ok;
          }, () => false);
        }
        assert.ok(up, "serving /metrics");
        for (let i = 0; i < 400; i++) {
          try {
            idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
          } catch {
            break;
          }
        }
        const probes = hits();
        await sleep(3000);
        assert.ok(hits() > probes, "still probing");
        assert.equal(
          await Promise.race([watch.status.then(() => "exited"), sleep(10).then(() => "up")]),
          "up",
        );
        for (const c of idle.splice(0)) {
          try {
            c.close();
          } catch { /* closed by the endpoint */ }
        }
        await sleep(500);
        const r = await fetch(`http://127.0.0.1:${port}/metrics`, {
          signal: AbortSignal.timeout(10_000),
        });
        assert.match(await r.text(), /php_relaunch_probes_total/);
        watch.kill("SIGTERM");
        assert.equal((await watch.status).code, 0);
      } finally {
        for (const c of idle) {
          try {
            c.close();
          } catch { /* closed */ }
        }
        try {
          watch.kill("SIGKILL");
        } catch { /* exited */ }
        await watch.status;
        await watch.stderr.cancel().catch(() => {});
      }
    });
  });
});
