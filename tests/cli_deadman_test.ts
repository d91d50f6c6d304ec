/**
 * The dead-man's switch, black box: the CLI with the shipped permissions against a loopback
 * receiver that is both the heartbeat and the push URL. Watch mode pings while it runs and stops
 * when it is killed; cron runs ping after their period, /fail when they fail, and say a failing
 * ping once. Nothing here touches php-fpm: the heartbeat is the receiver, the process name none.
 */
import assert from "node:assert/strict";
import { runCli, runDir, spawnCli } from "./support/cli.ts";

const SECRET = "3e1f9b2c-8d7a-4e6f-b5c4-00d0d0d0d0d0";

interface Ping {
  at: number;
  path: string;
}

/** The receiver: `/hb` answers as a heartbeat, `/ping/...` records and answers `status()`. */
async function withReceiver(
  fn: (base: string, pings: Ping[], answer: { status: number }) => Promise<void>,
) {
  const pings: Ping[] = [];
  const answer = { status: 200 };
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    (request) => {
      const url = new URL(request.url);
      if (url.pathname === "/hb") return new Response("127.0.0.1\n127.0.0.1\n");
      pings.push({ at: Date.now(), path: url.pathname });
      return new Response("OK", { status: answer.status });
    },
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, pings, answer);
  } finally {
    ac.abort();
    await server.finished;
  }
}

/** A closed loopback port, outside fetch's bad ports. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Waits until `done()`, checking every 50 ms, at most `ms`. */
async function waitUntil(done: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return done();
}

/** The cron form's arguments for a run of 2 s in `dir`, touching no php-fpm. */
const cronArgs = (heartbeat: string, dir: string) => [
  heartbeat,
  "1",
  "",
  "--run-for",
  "2",
  "--service",
  "php8.2-fpm",
  "--process-name",
  "php-fpm-dmtest",
  "--log-file",
  `${dir}/log`,
  "--lock-file",
  `${dir}/lock`,
  "--state-dir",
  `${dir}/state`,
];

Deno.test("cli deadman: watch mode pings every second while it runs, and not once it is killed", async () => {
  const work = await runDir("deadman-watch-");
  const dir = work.path;
  let watch: Deno.ChildProcess | null = null;
  try {
    await withReceiver(async (base, pings) => {
      const config = `${dir}/config.toml`;
      await Deno.writeTextFile(
        config,
        `[defaults]
interval = 1
timeout = 2
opcache_interval = 0
warn_child_crashes = 0

[deadman]
url = "${base}/ping/${SECRET}"
every = 1

[log]
file = "${dir}/log"

[state]
dir = "${dir}/state"
lock_dir = "${dir}"

[[target]]
name = "dmtest"
url = "${base}/hb"
service = "php8.2-fpm"
process_name = "php-fpm-dmtest"
pid_file = "${dir}/none.pid"
`,
      );
      const check = await runCli(["check-config", "--config", config]);
      assert.equal(check.code, 0, check.stderr);
      assert.match(check.stdout, /^dead-man {7}http:\/\/127\.0\.0\.1:\d+\/… \(healthchecks\.io/m);
      assert.ok(!check.stdout.includes(SECRET));

      watch = spawnCli(["watch", "--config", config]);
      assert.ok(await waitUntil(() => pings.length >= 4, 30_000), `pings: ${pings.length}`);
      assert.ok(pings.every((p) => p.path === `/ping/${SECRET}`), "alive, not /fail");
      const gaps = pings.slice(1).map((p, i) => p.at - pings[i]!.at);
      assert.ok(gaps.every((ms) => ms >= 500 && ms <= 2500), `about a second apart: ${gaps}`);

      watch.kill("SIGKILL");
      await watch.status;
      watch = null;
      const afterKill = pings.length;
      // three periods with no ping
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(pings.length, afterKill, "no ping after the watchdog died");
    });
    const log = await Deno.readTextFile(`${dir}/log`);
    assert.ok(!log.includes(SECRET), "the secret path is not logged");
  } finally {
    if (watch !== null) {
      (watch as Deno.ChildProcess).kill("SIGKILL");
      await (watch as Deno.ChildProcess).status;
    }
    await work.remove();
  }
});

Deno.test("cli deadman: a cron run pings after its period, /fail when it fails; a failing ping is said once", async () => {
  const work = await runDir("deadman-cron-");
  const dir = work.path;
  try {
    await withReceiver(async (base, pings, answer) => {
      const url = `${base}/ping/${SECRET}`;
      // healthy, the URL on the command line
      const ok = await runCli([...cronArgs(`${base}/hb`, dir), "--deadman-url", url]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(pings.map((p) => p.path), [`/ping/${SECRET}`]);
      assert.ok(Date.now() - pings[0]!.at < 2000 + ok.ms, "after the run");

      // nginx down (exit 7), the URL from the environment (kept out of ps)
      const env = { PHP_RELAUNCH_DEADMAN_URL: url };
      const down = await runCli(cronArgs(`http://127.0.0.1:${closedPort()}/hb`, dir), { env });
      assert.equal(down.code, 7, down.stderr);
      assert.equal(pings.at(-1)?.path, `/ping/${SECRET}/fail`);

      // the push URL fails for two runs, then works: said when it began and when it ended
      answer.status = 502;
      for (let i = 0; i < 2; i++) {
        const r = await runCli(cronArgs(`${base}/hb`, dir), { env });
        assert.equal(r.code, 0, r.stderr);
      }
      answer.status = 200;
      assert.equal((await runCli(cronArgs(`${base}/hb`, dir), { env })).code, 0);
      assert.equal(pings.length, 5);
    });
    const lines = (await Deno.readTextFile(`${dir}/log`)).split("\n").filter((l) =>
      l.includes("Dead-man's switch")
    );
    assert.equal(lines.length, 2, lines.join("\n"));
    assert.match(
      lines[0]!,
      /Dead-man's switch http:\/\/127\.0\.0\.1:\d+\/…: the ping failed: it answered HTTP 502;/,
    );
    assert.match(
      lines[1]!,
      /Dead-man's switch http:\/\/127\.0\.0\.1:\d+\/…: pinged again, failing since /,
    );
    assert.ok(!lines.join("\n").includes(SECRET));
  } finally {
    await work.remove();
  }
});
