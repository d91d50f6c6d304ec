/**
 * The watchdog under attack, as a black box with the shipped permissions: folders and files
 * planted by another user, links, secrets that must stay in the configuration, and input made to
 * crash it. Every refusal is exit 2 and one line; nothing is probed, created or leaked.
 */
import assert from "node:assert/strict";
import { runCli, runDir, withServer } from "./support/cli.ts";
import { incidentRecord } from "./support/fixtures.ts";

const SERVICE = ["--service", "php8.2-fpm", "--process-name", "php-fpm8.2"];
/** Another user's uid and gid (nobody, nogroup on Debian). */
const NOBODY = 65534;

/** The log, lock and state of a run kept in `dir`. */
const isolated = (dir: string) => [
  ...SERVICE,
  "--log-file",
  `${dir}/log`,
  "--lock-file",
  `${dir}/locks/lock`,
  "--state-dir",
  `${dir}/state`,
];

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await runDir("trust-");
  try {
    await Deno.mkdir(`${dir.path}/locks`, { mode: 0o700 });
    await fn(dir.path);
  } finally {
    await dir.remove();
  }
}

/** A loopback port nobody listens on (and that fetch does not refuse by number). */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

/** Every file's text below `dir`, for grepping. */
async function allText(dir: string): Promise<string> {
  let text = "";
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) text += await allText(path);
    else if (e.isFile) text += `\n== ${path}\n${await Deno.readTextFile(path)}`;
  }
  return text;
}

/** The one line on stderr, asserting there is exactly one. */
function oneLine(stderr: string): string {
  const lines = stderr.split("\n");
  assert.equal(lines.length, 1, `one line expected:\n${stderr}`);
  return lines[0]!;
}

Deno.test("trust: a lock folder or file another user made or can write is refused, nothing probed", async () => {
  await withDir(async (dir) => {
    await withServer(() => new Response("ok"), async (base, hits) => {
      const cases: [string, () => Promise<void>, RegExp][] = [
        [
          "folder owned by nobody",
          () => Deno.chown(`${dir}/locks`, NOBODY, NOBODY),
          /^php-relaunch: Refusing lock folder ".*\/locks": it is owned by uid 65534, not root$/,
        ],
        [
          "folder writable by all, like /run/lock",
          () => Deno.chmod(`${dir}/locks`, 0o1777),
          /^php-relaunch: Refusing lock folder ".*\/locks": its mode 1777 lets others write to it$/,
        ],
        [
          "lock file made first by nobody",
          async () => {
            await Deno.writeTextFile(`${dir}/locks/lock`, "");
            await Deno.chown(`${dir}/locks/lock`, NOBODY, NOBODY);
          },
          /^php-relaunch: Refusing lock file ".*\/locks\/lock": it is owned by uid 65534, not root$/,
        ],
        [
          "lock file writable by its group",
          async () => {
            await Deno.writeTextFile(`${dir}/locks/lock`, "");
            await Deno.chmod(`${dir}/locks/lock`, 0o660);
          },
          /^php-relaunch: Refusing lock file ".*": its mode 0660 lets others write to it$/,
        ],
      ];
      for (const [name, plant, expected] of cases) {
        await Deno.remove(`${dir}/locks`, { recursive: true });
        await Deno.mkdir(`${dir}/locks`, { mode: 0o700 });
        await plant();
        const r = await runCli([`${base}/hb`, "1", "", ...isolated(dir), "--run-for", "1"]);
        assert.equal(r.code, 2, `${name}: ${r.stderr}`);
        assert.match(oneLine(r.stderr), expected, name);
        assert.equal(hits(), 0, `${name}: nothing probed`);
        assert.ok(!(await exists(`${dir}/log`)), `${name}: refused before the log was made`);
      }
      // a missing lock folder is made, for root alone
      await Deno.remove(`${dir}/locks`, { recursive: true });
      const r = await runCli([`${base}/hb`, "1", "", ...isolated(dir), "--run-for", "1"]);
      assert.equal(r.code, 0, r.stderr);
      const made = await Deno.lstat(`${dir}/locks`);
      assert.equal((made.mode ?? 0) & 0o7777, 0o700);
      assert.equal(made.uid, 0);
    });
  });
});

Deno.test("trust: root's locks are in a folder of its own, not in the world-writable /run/lock", async () => {
  const r = await runCli(["check-config", "http://127.0.0.1:8889/hb", "5", "", ...SERVICE]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /lock, state {2}\/run\/php-relaunch\/php-relaunch-php8\.2-fpm\.lock, /);
});

Deno.test("trust: a path through a symbolic link is refused by its real folder, and nothing is created", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.symlink(`${dir}/elsewhere`, `${dir}/link`);
    const base = ["http://127.0.0.1:8889/hb", "1", "", ...SERVICE];
    const cases: [string, string[], string][] = [
      ["log file", ["--log-file", `${dir}/link/x.log`], "x.log"],
      ["state folder", ["--log-file", `${dir}/log`, "--state-dir", `${dir}/link/state`], "state"],
      [
        "lock file",
        ["--log-file", `${dir}/log`, "--lock-file", `${dir}/link/x.lock`],
        "x.lock",
      ],
      [
        "metrics file",
        ["--log-file", `${dir}/log`, "--metrics-file", `${dir}/link/x.prom`],
        "x.prom",
      ],
    ];
    for (const [what, flags, name] of cases) {
      const r = await runCli([...base, ...flags]);
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.match(
        oneLine(r.stderr),
        new RegExp(
          `^php-relaunch: Refusing ${what} ".*": ".*/link" is a symbolic link: name the real folder$`,
        ),
      );
      assert.deepEqual(
        await Array.fromAsync(Deno.readDir(`${dir}/elsewhere`), (e) => e.name),
        [],
        `${what}: nothing created through the link (${name})`,
      );
    }
  });
});

/** A mail server that accepts PLAIN and refuses every login, echoing what it was sent. */
function echoingSmtp(): { port: number; close(): void; done: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serve = async (conn: Deno.Conn) => {
    const enc = new TextEncoder();
    const say = (line: string) => conn.write(enc.encode(`${line}\r\n`));
    try {
      await say("220 echo ESMTP");
      const buf = new Uint8Array(4096);
      let pending = "";
      while (true) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += new TextDecoder().decode(buf.subarray(0, n));
        let at;
        while ((at = pending.indexOf("\r\n")) >= 0) {
          const line = pending.slice(0, at);
          pending = pending.slice(at + 2);
          if (/^(EHLO|HELO)/i.test(line)) await say("250-echo\r\n250 AUTH PLAIN");
          else if (/^AUTH/i.test(line)) await say(`535 5.7.8 rejected: ${line}`);
          else if (/^QUIT/i.test(line)) {
            await say("221 bye");
            return;
          } else await say("250 ok");
        }
      }
    } catch {
      // the client hung up
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const done = (async () => {
    const served: Promise<void>[] = [];
    try {
      for await (const conn of listener) {
        conns.push(conn);
        served.push(serve(conn));
      }
    } catch { /* closed */ }
    await Promise.all(served);
  })();
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close(), done };
}

Deno.test("trust: a secret in a webhook URL, an SMTP password or a bad URL is found nowhere", async () => {
  const secret = "s3cr3t-T0K3N";
  await withDir(async (dir) => {
    const smtp = echoingSmtp();
    try {
      const hook = `http://127.0.0.1:${closedPort()}/services/T00/B00/${secret}?token=${secret}`;
      const failing = [
        // the heartbeat's host refuses: an alert by mail (AUTH refused) and by webhook (refused)
        `http://127.0.0.1:${closedPort()}/hb`,
        "5",
        "ops@example.com",
        ...isolated(dir),
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        String(smtp.port),
        "--smtp-user",
        "alice",
        "--webhook",
        hook,
      ];
      const env = { PHP_RELAUNCH_SMTP_PASSWORD: secret };
      const first = await runCli(failing, { env });
      assert.equal(first.code, 7, first.stderr);
      // the next run retries what was queued, and fails again
      const second = await runCli(failing, { env });
      assert.equal(second.code, 7, second.stderr);
      const log = await Deno.readTextFile(`${dir}/log`);
      assert.match(
        log,
        /Mail to ops@example\.com through .* failed, queued for the next run: .*535/,
      );
      assert.match(log, /Webhook http:\/\/127\.0\.0\.1:\d+\/… failed, queued/);
      const state = await allText(`${dir}/state`);
      assert.match(state, /"channel":"webhook"/, "the webhook alert is queued");
      const bad = [];
      for (
        const argv of [
          ["--webhook", `https//hooks.example.com/services/${secret}`],
          ["--url", `http://alice:${secret}@127.0.0.1:8889/hb`],
          ["--url", `http//alice:${secret}@127.0.0.1:8889/hb`],
          ["--webhook", `ftp://h/${secret}`],
        ]
      ) {
        const url = argv[0] === "--url" ? [] : ["--url", "http://127.0.0.1:8889/hb"];
        const r = await runCli(["--once", ...url, ...argv, "--timeout", "5", ...isolated(dir)]);
        // refused for the URL, not for the way it was given
        assert.match(r.stderr, /(URI|webhook URL)/, r.stderr);
        bad.push(r);
      }
      await Deno.writeTextFile(
        `${dir}/config.toml`,
        `[webhook]\nurl = "hooks.example.com/${secret}"\n[[target]]\nname = "x"\nurl = "http://u:${secret}@127.0.0.1/"\n`,
      );
      bad.push(await runCli(["check-config", "--config", `${dir}/config.toml`, ...isolated(dir)]));
      for (const r of bad) {
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /^php-relaunch: /);
      }
      const everything = [
        first.stderr,
        first.stdout,
        second.stderr,
        log,
        state,
        ...bad.map((r) => r.stderr + r.stdout),
      ].join("\n");
      for (const form of [secret, btoa(`\0alice\0${secret}`), btoa(secret)]) {
        assert.ok(!everything.includes(form), `"${form}" leaked:\n${everything}`);
      }
    } finally {
      smtp.close();
      await smtp.done;
    }
  });
});

Deno.test("trust: input that crashed a subcommand is one line and exit 2, naming the value", async () => {
  await withDir(async (dir) => {
    const cases: [string[], RegExp][] = [
      [["report", "--since", "300000y", "--state-dir", `${dir}/state`], /since "300000y"/],
      [
        ["--once", "fcgi://127.0.0.1:9000/%E0%A4%A", "5", "", ...isolated(dir)],
        /URI "fcgi:\/\/127\.0\.0\.1:9000\/%E0%A4%A": the path .* bad %-escape/,
      ],
      [
        ["--once", "fcgi+unix:///run/x.sock/%ff", "5", "", ...isolated(dir)],
        /URI "fcgi\+unix:\/\/\/run\/x\.sock\/%ff": .*bad %-escape/,
      ],
      [[
        "--once",
        "http://127.0.0.1:8889/",
        "5",
        "",
        ...isolated(dir),
        "--status-url",
        "fcgi://127.0.0.1:9000/%E0%A4%A",
      ], /bad %-escape/],
      [
        ["--once", "http://127.0.0.1:6666/", "5", "", ...isolated(dir)],
        /URI "http:\/\/127\.0\.0\.1:6666\/": port 6666 is one that fetch refuses/,
      ],
      [[
        "--once",
        "http://127.0.0.1:8889/",
        "5",
        "",
        ...isolated(dir),
        "--webhook",
        "http://127.0.0.1:25/x",
      ], /webhook URL http:\/\/127\.0\.0\.1:25\/…: port 25/],
      [
        ["--once", `http://127.0.0.1/${"x".repeat(9000)}`, "5", "", ...isolated(dir)],
        /it has 9017 characters, at most 8192/,
      ],
      [[
        "--once",
        "http://127.0.0.1:8889/",
        "5",
        `${"a".repeat(250)}@example.com`,
        ...isolated(dir),
      ], /email address "a{60}…": expected user@host of at most 254/],
      [[
        "--once",
        "http://127.0.0.1:8889/",
        "5",
        Array.from({ length: 51 }, (_, i) => `u${i}@example.com`).join(","),
        ...isolated(dir),
      ], /Cannot mail 51 recipients: at most 50/],
      [
        ["--once", "http://127.0.0.1:8889/", "5", "a@b.c\r\nBcc: x@y.z", ...isolated(dir)],
        /email address "a@b\.c\\r\\nBcc: x@y\.z"/,
      ],
    ];
    for (const [argv, expected] of cases) {
      const r = await runCli(argv);
      assert.equal(r.code, 2, `${argv.join(" ")}: ${r.stderr}`);
      assert.match(oneLine(r.stderr), expected);
    }
    // a state file that is a folder, a state folder that is a file
    await Deno.mkdir(`${dir}/state/php8.2-fpm.json`, { recursive: true });
    const folder = await runCli(["http://127.0.0.1:8889/", "5", "", ...isolated(dir)]);
    assert.equal(folder.code, 2);
    assert.match(
      oneLine(folder.stderr),
      /Refusing state file ".*\/php8\.2-fpm\.json": it is not a regular file/,
    );
    await Deno.writeTextFile(`${dir}/statefile`, "");
    const file = await runCli([
      "http://127.0.0.1:8889/",
      "5",
      "",
      ...isolated(dir),
      "--state-dir",
      `${dir}/statefile`,
    ]);
    assert.equal(file.code, 2);
    assert.match(oneLine(file.stderr), /Refusing state folder ".*\/statefile": it is not a folder/);
    // a configuration file too large to be one
    await Deno.writeTextFile(`${dir}/big.toml`, "# x\n".repeat(300_000));
    const big = await runCli(["check-config", "--config", `${dir}/big.toml`]);
    assert.equal(big.code, 2);
    assert.match(
      oneLine(big.stderr),
      /config file ".*big\.toml": it has 1200000 bytes, more than the 1048576 allowed/,
    );
    // check-config takes a watch configuration with [metrics] listen
    await Deno.writeTextFile(
      `${dir}/watch.toml`,
      `[metrics]\nlisten = "127.0.0.1:9867"\n[log]\nfile = "${dir}/log"\n[state]\ndir = "${dir}/state2"\nlock_dir = "${dir}/locks"\n[[target]]\nname = "x"\nurl = "http://127.0.0.1:8889/hb"\nservice = "php8.2-fpm"\nprocess_name = "php-fpm8.2"\n`,
    );
    const check = await runCli(["check-config", "--config", `${dir}/watch.toml`]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /http:\/\/127\.0\.0\.1:9867\/metrics/);
  });
});

Deno.test("trust: bad incident records are skipped with one line each; the report goes on", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/state`);
    const now = Date.now();
    const good = { ...incidentRecord(now), pool: null };
    const evidence = good.evidence;
    await Deno.writeTextFile(
      `${dir}/state/incidents.jsonl`,
      [
        JSON.stringify({ version: 1, at: now, evidence: {} }),
        JSON.stringify({ ...good, restart: null }),
        JSON.stringify({ ...good, evidence: { ...evidence, processes: [{ pid: "\x1b[31m" }] } }),
        JSON.stringify({ ...good, at: 1e300 }),
        "\x00\x01binary\x1b",
        JSON.stringify(good),
      ].join("\n") + "\n",
    );
    const r = await runCli(["report", "--state-dir", `${dir}/state`, "--format", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.split("\n");
    assert.equal(lines.length, 4, r.stderr);
    for (const line of lines) {
      assert.match(
        line,
        /^php-relaunch: skipped a record of the incident log: incidents\.jsonl line \d: /,
      );
    }
    assert.match(lines[0]!, /line 1: host: missing$/);
    assert.match(lines[2]!, /line 4: at: expected <=8640000000000000$/);
    assert.ok(!r.stderr.includes("\x1b"), "no byte of a record is echoed");
    const report = JSON.parse(r.stdout);
    assert.equal(report.incidents, 2, "the record with restart null is read");
    assert.equal(report.skipped, 4);
  });
});

Deno.test("trust: a binary state file is reported by its size and the parser's reason, on one line", async () => {
  await withDir(async (dir) => {
    await withServer(() => new Response("ok"), async (base) => {
      await Deno.mkdir(`${dir}/state`, { mode: 0o700 });
      await Deno.writeFile(
        `${dir}/state/php8.2-fpm.json`,
        new Uint8Array([0x1b, 0x5b, 0x32, 0x4a, 0x0a, 0x0d, 0, 0xff]),
      );
      const r = await runCli([`${base}/hb`, "1", "", ...isolated(dir), "--run-for", "1"]);
      assert.equal(r.code, 0, r.stderr);
      const log = await Deno.readTextFile(`${dir}/log`);
      assert.match(
        log,
        /State file .*php8\.2-fpm\.json is corrupt \(8 bytes: not JSON\): starting afresh\./,
      );
      for (const byte of ["\x00", "\x1b", "\r"]) {
        assert.ok(!log.includes(byte), "no control byte reaches the log");
      }
    });
  });
});

Deno.test("trust: what a server says is escaped, a log line is one line; expect holds for HTTP", async () => {
  await withDir(async (dir) => {
    await withServer(
      () => new Response("\x1b[2J\r\nFatal error: x\u2028y"),
      async (base) => {
        const r = await runCli([
          `${base}/hb`,
          "1",
          "",
          ...isolated(dir),
          "--run-for",
          "1",
          "--expect",
          "ok",
        ]);
        assert.equal(r.code, 4, r.stderr);
        const log = (await Deno.readTextFile(`${dir}/log`)).trimEnd().split("\n");
        for (const line of log) assert.match(line, /^\d{4}-\d\d-\d\dT\S+Z \S+ /, line);
        assert.match(
          log.join("\n"),
          /unexpected PHP not restarted: heartbeat .* answered "\\x1b\[2J\\r\\nFatal error: x\\u2028y", expected "ok": .*a PHP error page/,
        );
      },
    );
  });
});
