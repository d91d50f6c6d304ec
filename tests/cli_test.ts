/** Black-box tests of the CLI under cron's environment, with the shipped permission set. */
import assert from "node:assert/strict";
import { VERSION } from "../src/usage.ts";
import { tryLock } from "../src/shared/lock.ts";
import { ROOT, runCli, runDir, withServer } from "./support/cli.ts";
import { givenUpState } from "./support/fixtures.ts";

// named, as on a host with several PHP versions; nothing here starts or stops a service
const SERVICE = ["--service", "php8.2-fpm", "--process-name", "php-fpm8.2"];

/** The service named, and the log, lock and state kept in `dir`. */
const isolated = (dir: string) => [
  ...SERVICE,
  "--log-file",
  `${dir}/log`,
  "--lock-file",
  `${dir}/lock`,
  "--state-dir",
  `${dir}/state`,
];

async function withHeartbeat(fn: (url: string, hits: () => number) => Promise<void>) {
  await withServer(
    () => new Response("127.0.0.1\n127.0.0.1\n"),
    (base, hits) => fn(`${base}/php-heartbeat.php`, hits),
  );
}

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await runDir("cli-");
  try {
    await fn(dir.path);
  } finally {
    await dir.remove();
  }
}

Deno.test("cli: --help and --version", async () => {
  const help = await runCli(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^php-relaunch \d/);
  assert.match(help.stdout, /Exit codes:/);
  const version = await runCli(["--version"]);
  assert.equal(version.code, 0);
  // run from a checkout, the revision is read from .git (the binary carries dist/revision.txt)
  const head = await new Deno.Command("git", {
    args: ["-C", ROOT, "rev-parse", "--short=12", "HEAD"],
  })
    .output();
  const rev = new TextDecoder().decode(head.stdout).trim();
  assert.equal(
    version.stdout,
    `php-relaunch ${VERSION} (deno ${Deno.version.deno}, revision ${rev})`,
  );
});

Deno.test("cli: bad input exits 2 with one line on stderr and writes no log", async () => {
  await withTempDir(async (dir) => {
    const log = `${dir}/php-relaunch.log`;
    for (
      const args of [
        [],
        ["--nope"],
        ["http://127.0.0.1:8889/php-heartbeat.php", "abc", ""],
        ["http://127.0.0.1:8889/php-heartbeat.php", "5", "not-an-address"],
        ["gopher://127.0.0.1/", "5", ""],
        ["http://127.0.0.1/", "5", "", "1", "2"],
      ]
    ) {
      const r = await runCli([...args, "--log-file", log]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /^php-relaunch: /);
      assert.equal(r.stdout, "");
    }
    await assert.rejects(() => Deno.stat(log), Deno.errors.NotFound);
  });
});

Deno.test("cli: --once under cron's bare environment, through a dead HTTP_PROXY", async () => {
  await withTempDir(async (dir) => {
    await withHeartbeat(async (url, hits) => {
      const r = await runCli(["--once", url, "3", "", ...SERVICE, "--log-file", `${dir}/log`], {
        env: { HTTP_PROXY: "http://127.0.0.1:9", http_proxy: "http://127.0.0.1:9" },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^200 healthy in \d+ ms/);
      assert.equal(hits(), 1);
    });
  });
});

Deno.test("cli: nothing listening: exit 7 and a log line saying why", async () => {
  await withTempDir(async (dir) => {
    const port = (() => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const p = l.addr.port;
      l.close();
      return p;
    })();
    const r = await runCli([
      `http://127.0.0.1:${port}/php-heartbeat.php`,
      "2",
      "",
      ...isolated(dir),
    ]);
    assert.equal(r.code, 7, r.stderr);
    const log = await Deno.readTextFile(`${dir}/log`);
    assert.match(log, /^\S+Z \S+ refused PHP not restarted: .*nginx or the address is down/);
  });
});

Deno.test("cli: a run finding watch mode's lock exits 0 at once; another cron run's, it waits", async () => {
  await withTempDir(async (dir) => {
    await withHeartbeat(async (url, hits) => {
      const lock = await tryLock(`${dir}/lock`);
      assert.ok(lock);
      let released = false;
      try {
        await lock.say("watch 1");
        const r = await runCli([url, "5", "", ...isolated(dir)]);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
        assert.equal(hits(), 0);
        assert.match(await Deno.readTextFile(`${dir}/log`), /php-relaunch watch holds/);

        // a cron run still under way: this one (mcron, every 10 s) waits, then probes
        await lock.say("cron 1");
        const run = runCli([url, "2", "", "--run-for", "10", ...isolated(dir)]);
        await new Promise((resolve) => setTimeout(resolve, 3000));
        assert.equal(hits(), 0, "nothing probed while the other run holds it");
        released = true;
        lock[Symbol.dispose]();
        const waited = await run;
        assert.equal(waited.code, 0, waited.stderr);
        assert.ok(hits() >= 1, "probed once the lock was free");
        assert.ok(waited.ms < 30_000, `took ${waited.ms} ms`);
        assert.match(await Deno.readTextFile(`${dir}/log`), /Another run holds .*; waiting for it/);
      } finally {
        if (!released) lock[Symbol.dispose]();
      }
    });
  });
});

Deno.test("cli: a log file path that is a symlink is refused with exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/victim`, "keep\n");
    await Deno.symlink(`${dir}/victim`, `${dir}/log`);
    const r = await runCli([
      "--once",
      "http://127.0.0.1:47/",
      "1",
      "",
      ...SERVICE,
      "--log-file",
      `${dir}/log`,
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /symbolic link/);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep\n");
  });
});

Deno.test("cli: reset re-arms a target that gave up; --log-format json writes JSON lines", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/state`);
    const gaveUp = givenUpState(2);
    await Deno.writeTextFile(`${dir}/state/php8.2-fpm.json`, JSON.stringify(gaveUp));
    // only to keep the lock in the test's folder
    await Deno.writeTextFile(
      `${dir}/config.toml`,
      `[state]\nlock_dir = "${dir}"\n[[target]]\nname = "x"\nurl = "http://127.0.0.1:47/"\nservice = "php8.2-fpm"\n`,
    );
    const r = await runCli([
      "reset",
      "php8.2-fpm",
      "--state-dir",
      `${dir}/state`,
      "--config",
      `${dir}/config.toml`,
      "--log-file",
      `${dir}/log`,
      "--log-format",
      "json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "re-armed php8.2-fpm");
    const state = JSON.parse(await Deno.readTextFile(`${dir}/state/php8.2-fpm.json`));
    assert.equal(state.givenUpAt, null);
    assert.deepEqual(state.restarts, []);
    const line = JSON.parse((await Deno.readTextFile(`${dir}/log`)).trim());
    assert.equal(line.name, "php8.2-fpm");
    assert.match(line.message, /^Re-armed php8\.2-fpm/);
  });
});

Deno.test("cli: a lock file path that is a symlink is refused with exit 2, not as a bug", async () => {
  await withTempDir(async (dir) => {
    await withHeartbeat(async (url, hits) => {
      await Deno.writeTextFile(`${dir}/victim`, "keep\n");
      await Deno.symlink(`${dir}/victim`, `${dir}/lock`);
      const r = await runCli([url, "5", "", ...isolated(dir)]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /^php-relaunch: Refusing lock file ".*": it is a symbolic link$/,
      );
      assert.equal(hits(), 0);
      assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep\n");
    });
  });
});

Deno.test("cli: watch with a metrics port already taken exits 2 before probing anything", async () => {
  const work = await runDir("cli-metrics-");
  const dir = work.path;
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await withHeartbeat(async (url, hits) => {
      const r = await runCli([
        "watch",
        url,
        "--metrics-listen",
        `127.0.0.1:${taken.addr.port}`,
        ...isolated(dir),
      ], { timeoutMs: 60_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^php-relaunch: Cannot serve metrics on 127\.0\.0\.1:\d+: /);
      assert.equal(hits(), 0);
    });
    const outside = await runCli([
      "watch",
      "http://127.0.0.1:47/",
      "--metrics-listen",
      "0.0.0.0:9867",
      ...isolated(dir),
    ]);
    assert.equal(outside.code, 2);
    assert.match(outside.stderr, /metrics address "0\.0\.0\.0:9867": expected 127\.0\.0\.1:PORT/);
  } finally {
    taken.close();
    await work.remove();
  }
});

Deno.test("cli: a log or state path outside what the permissions allow is a one-line exit 2", async () => {
  const r = await runCli([
    "http://127.0.0.1:47/",
    "5",
    "",
    ...SERVICE,
    "--log-file",
    "/tmp/php-relaunch.log",
  ]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /^php-relaunch: Cannot use log file "\/tmp\/php-relaunch\.log": php-relaunch's permissions do not let it write there \(\/var\/lib\/php-relaunch, .*\); choose a path there/,
  );
  assert.equal(r.stderr.split("\n").length, 1);
  const state = await runCli([
    "http://127.0.0.1:47/",
    "5",
    "",
    ...SERVICE,
    "--state-dir",
    "/srv/relaunch",
  ]);
  assert.equal(state.code, 2);
  assert.match(state.stderr, /Cannot use state folder "\/srv\/relaunch"/);
});

Deno.test("cli: status reads the state files beside a run that holds the lock; 0 healthy, 3 given up", async () => {
  await withTempDir(async (dir) => {
    await withHeartbeat(async (url) => {
      // a cron run leaves its memory, the last probe included
      const run = await runCli([url, "1", "", ...isolated(dir), "--run-for", "1"]);
      assert.equal(run.code, 0, run.stderr);
      const lock = await tryLock(`${dir}/lock`);
      assert.ok(lock, "the run is over");
      try {
        const healthy = await runCli(["status", "--state-dir", `${dir}/state`]);
        assert.equal(healthy.code, 0, healthy.stderr);
        assert.match(
          healthy.stdout,
          /^php8\.2-fpm: healthy\n {2}last probe {3}200 \(healthy\) in \d+ ms, \d+ s ago\n/,
        );
        await Deno.writeTextFile(
          `${dir}/state/php7.4-fpm.json`,
          JSON.stringify(givenUpState(Date.now() - 5000)),
        );
        const down = await runCli(["status", "--state-dir", `${dir}/state`, "--format", "json"]);
        assert.equal(down.code, 3, down.stderr);
        const list = JSON.parse(down.stdout);
        assert.deepEqual(
          list.map((t: { target: string; standing: string }) => [t.target, t.standing]),
          [
            ["php7.4-fpm", "given_up"],
            ["php8.2-fpm", "healthy"],
          ],
        );
        assert.equal(list[1].lastProbe.label, "200");
      } finally {
        lock[Symbol.dispose]();
      }
    });
  });
});
