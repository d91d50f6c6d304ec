import assert from "node:assert/strict";
import { memoryPauses } from "../../src/run/pause_file.ts";
import { parseCommandLine } from "../../src/cli.ts";
import { loadConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/settings.ts";
import type { HttpGet } from "../../src/shared/deps.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import type { Notifier } from "../../src/run/notify.ts";
import { memoryStateStore } from "../../src/run/state.ts";
import { type SignalSource, watchForever, type WatchSignal } from "../../src/run/watch.ts";
import { FpmHost } from "../support/fpm_host.ts";
import {
  actions,
  captureLogs,
  debianFs,
  FakeClock,
  fakeHost,
  fakeMailer,
  hangingMailer,
  memoryLocks,
  scriptedFcgi,
  testDeps,
  until,
} from "../support/fakes.ts";
import { givenUpState } from "../support/fixtures.ts";

/** Signals the test sends itself. */
function fakeSignals() {
  const handlers = new Map<WatchSignal, Set<() => void>>();
  const source: SignalSource = (signal, handler) => {
    const set = handlers.get(signal) ?? new Set();
    set.add(handler);
    handlers.set(signal, set);
    return () => set.delete(handler);
  };
  return {
    source,
    send: (signal: WatchSignal) => handlers.get(signal)?.forEach((h) => h()),
    listeners: () => [...handlers.values()].reduce((n, s) => n + s.size, 0),
  };
}

/** Two PHP versions, each a master and two workers (7.4's 1000-1002, 8.2's 1003-1005). */
function twoPools() {
  const host = new FpmHost();
  host.up("php7.4-fpm");
  host.up("php8.2-fpm");
  return host.runner();
}

const CONFIG = `
[defaults]
interval = 1
timeout = 1
grace_period = 0

[[target]]
name = "legacy"
url = "http://127.0.0.1:8874/hb.php"
service = "php7.4-fpm"

[[target]]
name = "main"
url = "http://127.0.0.1:8889/hb.php"
service = "php8.2-fpm"
`;

async function setup(
  http: (url: URL, n: number) => number,
  files = { "/etc/php-relaunch/config.toml": CONFIG },
) {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-watch-" });
  const clock = new FakeClock();
  const calls = new Map<string, number>();
  const httpGet: HttpGet = (url) => {
    const n = (calls.get(url.port) ?? 0) + 1;
    calls.set(url.port, n);
    clock.advance(2);
    return Promise.resolve({ status: http(url, n), location: null, body: "" });
  };
  const runner = twoPools();
  const deps = testDeps({
    clock,
    httpGet,
    runner,
    mailer: fakeMailer(),
    // not root: locks go to our own runtime folder, not /run/lock
    host: fakeHost(1000, { HOME: dir, XDG_RUNTIME_DIR: dir }),
    fs: debianFs({
      dirs: { "/etc/init.d": ["php7.4-fpm", "php8.2-fpm"] },
      executables: ["/usr/sbin/php-fpm7.4"],
      files,
    }),
  });
  const { mode, raw } = parseCommandLine(["watch"]);
  const cfg = await loadConfig(mode as "watch", raw, deps);
  const logs = captureLogs();
  const signals = fakeSignals();
  const stores = new Map<string, ReturnType<typeof memoryStateStore>>();
  return {
    dir,
    cfg,
    deps,
    runner,
    calls,
    logs,
    signals,
    raw,
    stores,
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("watch: two targets on two php-fpm versions restart independently; SIGTERM stops it", async () => {
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port === "8889" && n === 30) s.signals.send("SIGTERM");
    // the legacy pool crashes at its 5th probe and stays down until restarted
    const restarted = s.runner.lines().some((l) => l.includes("php7.4-fpm start"));
    return url.port === "8874" && n >= 5 && !restarted ? 502 : 200;
  });
  try {
    const code = await watchForever(s.cfg, s.deps, { signals: s.signals.source });
    assert.equal(code, 0);
    const lines = s.runner.lines();
    // the ladder on 7.4's own master (1000) and pool, by pid
    assert.equal(actions(s.runner)[0], "/usr/bin/kill -USR2 1000", lines.join("\n"));
    assert.ok(lines.includes("/usr/sbin/service php7.4-fpm start"));
    assert.ok(
      !actions(s.runner).some((l) => /8\.2|100[345]/.test(l)),
      "the other version is never touched",
    );
    assert.ok((s.calls.get("8874") ?? 0) > 10, "the restarted target is still watched");
    assert.deepEqual(s.logs.lines().filter((l) => /PHP restart/.test(l)), ["502 PHP restarted."]);
    assert.equal(s.signals.listeners(), 0, "signal handlers removed");
    // the locks are free again
    const { tryLock } = await import("../../src/shared/lock.ts");
    for (const t of s.cfg.targets) {
      // cron runs read who held it: watch mode, which they do not wait for
      assert.equal(await Deno.readTextFile(t.lockFile), `watch ${Deno.pid}\n`);
      const lock = await tryLock(t.lockFile);
      assert.ok(lock, t.lockFile);
      lock[Symbol.dispose]();
    }
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: a pause is honoured at the next probe, and so is its end, without SIGHUP", async () => {
  const pauses = memoryPauses();
  let restartsWhilePaused = 0;
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port === "8889" && n === 40) s.signals.send("SIGTERM");
    if (url.port !== "8874") return 200;
    const now = s.deps.clock.now();
    if (n === 3) {
      pauses.items.set("legacy", { at: now, until: now + 3_600_000, by: "bob", reason: "deploy" });
    }
    const restarted = s.runner.lines().some((l) => l.includes("php7.4-fpm start"));
    if (n === 15) {
      restartsWhilePaused = actions(s.runner).length;
      pauses.items.delete("legacy");
    }
    // crashed from its 5th probe, while paused, and down until restarted
    return n >= 5 && !restarted ? 502 : 200;
  });
  try {
    assert.equal(await watchForever(s.cfg, s.deps, { signals: s.signals.source, pauses }), 0);
    assert.equal(restartsWhilePaused, 0, "nothing run while paused");
    assert.ok(
      s.runner.lines().includes("/usr/sbin/service php7.4-fpm start"),
      "resumed: restarted",
    );
    assert.ok(s.logs.lines().some((l) => /^502 while paused until .* \(deploy\)/.test(l)));
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: a single stray 502 restarts nothing; confirmed 1 s later", async () => {
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (n === 20) s.signals.send("SIGTERM");
    return url.port === "8889" && n === 3 ? 502 : 200;
  });
  try {
    await watchForever(s.cfg, s.deps, { signals: s.signals.source });
    assert.deepEqual(actions(s.runner), []);
    assert.ok(s.deps.clock.sleeps.includes(1000));
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: SIGHUP with an invalid config keeps running on the old one", async () => {
  let reloads = 0;
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port === "8889" && n === 5) s.signals.send("SIGHUP");
    if (url.port === "8889" && n === 15) s.signals.send("SIGTERM");
    return 200;
  });
  try {
    const code = await watchForever(s.cfg, s.deps, {
      signals: s.signals.source,
      reload: () => {
        reloads++;
        return Promise.reject(
          new ConfigError(["/etc/php-relaunch/config.toml: target[0].url: missing"]),
        );
      },
    });
    assert.equal(code, 0);
    assert.equal(reloads, 1);
    assert.match(
      s.logs.lines().join("\n"),
      /SIGHUP: the new configuration is invalid, keeping the old one: .*url: missing/,
    );
    assert.ok((s.calls.get("8889") ?? 0) >= 15, "probing went on");
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: SIGHUP with a valid config switches to it and re-arms", async () => {
  let next!: Config;
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port === "8889" && n === 5) s.signals.send("SIGHUP");
    if (url.port === "8889" && n === 12) s.signals.send("SIGTERM");
    return 200;
  });
  try {
    // the new file drops the legacy target
    const files = {
      "/etc/php-relaunch/config.toml": CONFIG.split('[[target]]\nname = "legacy"')[0] +
        CONFIG.split('\n\n[[target]]\nname = "main"')[1]!.replace(/^/, '[[target]]\nname = "main"'),
    };
    next = await loadConfig("watch", s.raw, {
      ...s.deps,
      fs: debianFs({ dirs: { "/etc/init.d": ["php7.4-fpm", "php8.2-fpm"] }, files }),
    });
    assert.deepEqual(next.targets.map((t) => t.name), ["main"]);
    const legacyBefore = () => s.calls.get("8874") ?? 0;
    await watchForever(s.cfg, s.deps, {
      signals: s.signals.source,
      reload: () => Promise.resolve(next),
    });
    assert.match(s.logs.lines().join("\n"), /SIGHUP: configuration reloaded \(1 targets\)/);
    assert.ok(legacyBefore() <= 7, `the dropped target stopped being probed (${legacyBefore()})`);
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: systemd hears READY, WATCHDOG and STOPPING", async () => {
  const sent: string[] = [];
  const notifier: Notifier = {
    watchdogEveryMs: 2000,
    send: (state) => {
      sent.push(state);
      return Promise.resolve();
    },
  };
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port === "8889" && n === 20) s.signals.send("SIGTERM");
    return 200;
  });
  try {
    await watchForever(s.cfg, s.deps, { signals: s.signals.source, notifier });
    assert.equal(sent[0], "READY=1");
    assert.ok(sent.includes("WATCHDOG=1"));
    assert.equal(sent.at(-1), "STOPPING=1");
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: SIGTERM during a restart lets the restart finish, then exits 0", async () => {
  let signalled = false;
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    // a bound on the test: it never waits for ever for the signal below
    if (n === 500) s.signals.send("SIGTERM");
    const restarted = s.runner.lines().some((l) => l.includes("php8.2-fpm start"));
    return url.port === "8889" && n >= 3 && !restarted ? 502 : 200;
  });
  // the signal arrives while the restart rung is between its stop (SIGQUIT) and its start
  const runner = s.runner;
  const original = runner.run.bind(runner);
  runner.run = (cmd, args, opts) => {
    if (cmd.endsWith("/kill") && args[0] === "-QUIT" && !signalled) {
      signalled = true;
      s.signals.send("SIGTERM");
    }
    return original(cmd, args, opts);
  };
  try {
    assert.equal(await watchForever(s.cfg, s.deps, { signals: s.signals.source }), 0);
    assert.ok(signalled);
    const lines = runner.lines();
    const stopped = lines.findIndex((l) => l.startsWith("/usr/bin/kill -QUIT "));
    assert.ok(stopped >= 0, lines.join("\n"));
    assert.ok(lines.slice(stopped).includes("/usr/sbin/service php8.2-fpm start"), "started again");
    assert.deepEqual(s.logs.lines().filter((l) => /PHP restart/.test(l)), ["502 PHP restarted."]);
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: a long restart is slow, not hung: systemd's watchdog keeps being pinged", async () => {
  let inRestart = false;
  const pingsDuringRestart: number[] = [];
  const notifier: Notifier = {
    watchdogEveryMs: 2000,
    send: (state) => {
      if (state === "WATCHDOG=1" && inRestart) pingsDuringRestart.push(s.deps.clock.now());
      return Promise.resolve();
    },
  };
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port === "8889" && n === 40) s.signals.send("SIGTERM");
    const restarted = s.runner.lines().some((l) => l.includes("php8.2-fpm start"));
    return url.port === "8889" && n >= 3 && !restarted ? 502 : 200;
  });
  const runner = s.runner;
  const original = runner.run.bind(runner);
  runner.run = async (cmd, args, opts) => {
    if (cmd.endsWith("/kill") && ["-QUIT", "-KILL"].includes(args[0]!)) inRestart = true;
    if (inRestart && args.includes("start")) {
      // a start that takes two minutes, in slices, as a slow init script would
      for (let i = 0; i < 60; i++) await s.deps.clock.sleep(2000);
      inRestart = false;
    }
    return await original(cmd, args, opts);
  };
  try {
    await watchForever(s.cfg, s.deps, { signals: s.signals.source, notifier });
    assert.ok(pingsDuringRestart.length > 0, "pinged while restarting");
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: a valid SIGHUP re-arms a target that gave up", async () => {
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port === "8889" && n === 5) s.signals.send("SIGHUP");
    if (url.port === "8889" && n === 12) s.signals.send("SIGTERM");
    return 200;
  });
  try {
    const main = s.cfg.targets.find((t) => t.name === "main")!;
    await Deno.mkdir(main.stateFile.slice(0, main.stateFile.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(
      main.stateFile,
      JSON.stringify(givenUpState(s.deps.clock.now() - 1000, 3)),
    );
    const code = await watchForever(s.cfg, s.deps, {
      signals: s.signals.source,
      reload: () => Promise.resolve(s.cfg),
    });
    assert.equal(code, 0);
    const after = JSON.parse(await Deno.readTextFile(main.stateFile));
    assert.equal(after.givenUpAt, null, "re-armed");
    assert.deepEqual(after.restarts, [], "the restart history is forgotten");
  } finally {
    await s.cleanup();
  }
});

Deno.test("watch: a lock held by a cron run is waited for; nothing is probed until it is free", async () => {
  const s: Awaited<ReturnType<typeof setup>> = await setup(() => 200);
  const main = s.cfg.targets.find((t) => t.name === "main")!;
  const legacy = s.cfg.targets.find((t) => t.name === "legacy")!;
  const locks = memoryLocks(main.lockFile);
  const run = watchForever(s.cfg, s.deps, { signals: s.signals.source, lock: locks });
  try {
    assert.ok(await until(() => (s.calls.get("8874") ?? 0) > 10), "the other target is probed");
    assert.equal(s.calls.get("8889") ?? 0, 0, "the held target is not");
    assert.match(s.logs.lines().join("\n"), /Another php-relaunch holds .*; waiting for it\./);
    locks.held.delete(main.lockFile);
    assert.ok(await until(() => (s.calls.get("8889") ?? 0) > 3), "probed once the lock is free");
    assert.ok(locks.held.has(main.lockFile) && locks.held.has(legacy.lockFile), "both held now");
  } finally {
    s.signals.send("SIGTERM");
    assert.equal(await run, 0);
    await s.cleanup();
  }
});

Deno.test("watch: a target loop that hangs stops systemd's watchdog pings", async () => {
  const pings: number[] = [];
  const notifier: Notifier = {
    watchdogEveryMs: 1000,
    send: (state) => {
      if (state === "WATCHDOG=1") pings.push(s.deps.clock.now());
      return Promise.resolve();
    },
  };
  let hang = false;
  // when the first probe hung: the loop's last sign of life
  let hungSince: number | null = null;
  const hung: (() => void)[] = [];
  const release = () => hung.splice(0).forEach((resolve) => resolve());
  const s: Awaited<ReturnType<typeof setup>> = await setup(() => 200);
  const healthy = s.deps.httpGet;
  // a probe that hangs past every deadline, as a wedged event loop task would
  s.deps.httpGet = (url, signal) => {
    if (!hang) return healthy(url, signal);
    hungSince ??= s.deps.clock.now();
    return new Promise((resolve) => {
      hung.push(() => resolve({ status: 200, location: null, body: "" }));
    });
  };
  const run = watchForever(s.cfg, s.deps, { signals: s.signals.source, notifier });
  try {
    assert.ok(await until(() => pings.length >= 3), "pinged while probing");
    hang = true;
    assert.ok(
      await until(() => hungSince !== null && s.deps.clock.now() - hungSince > 60_000),
      "the watchdog's clock runs",
    );
    // silent for 4 periods and a timeout, then one period for the watchdog's own sleep
    const late = pings.filter((at) => at > hungSince! + 4 * 1000 + 1000 + 1000);
    assert.deepEqual(late, [], "no ping once the loop was silent for 4 periods and a timeout");
    assert.ok(pings.some((at) => at > hungSince!), "pinged on until the silence was too long");
  } finally {
    s.signals.send("SIGTERM");
    release();
    assert.equal(await run, 0);
    await s.cleanup();
  }
});

Deno.test("watch: a mail server that never answers delays neither probes nor restarts", async () => {
  const mailer = hangingMailer();
  let back: number | null = null;
  const s: Awaited<ReturnType<typeof setup>> = await setup((url, n) => {
    if (url.port !== "8889") return 200;
    const restarts = s.runner.lines().filter((l) => l.includes("php8.2-fpm start")).length;
    if (restarts === 1) back ??= n;
    // main crashes at its 5th probe, and again 20 probes after it came back
    const crashed = (n >= 5 && restarts === 0) || (restarts === 1 && n >= back! + 20);
    return crashed ? 502 : 200;
  });
  s.deps.mailer = mailer;
  const cfg = {
    ...s.cfg,
    targets: s.cfg.targets.map((t) => ({ ...t, mailTo: ["ops@example.com"] })),
  };
  const run = watchForever(cfg, s.deps, { signals: s.signals.source });
  try {
    const starts = () => s.runner.lines().filter((l) => l.includes("php8.2-fpm start")).length;
    assert.ok(
      await until(() =>
        starts() === 2 && mailer.sent.length === 2 && (s.calls.get("8889") ?? 0) > 40
      ),
      `on time while the mail hangs: ${starts()} restarts, ${mailer.sent.length} mails, ${
        s.calls.get("8889")
      } probes`,
    );
  } finally {
    s.signals.send("SIGTERM");
    mailer.release();
    assert.equal(await run, 0);
    await s.cleanup();
  }
});

Deno.test("watch --auto: the targets discovery finds; a pool changed on disk is found again, without SIGHUP", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-auto-" });
  const clock = new FakeClock();
  const conf = (listen: string) =>
    `[global]\npid = /run/php/php8.2-fpm.pid\n[www]\nlisten = ${listen}\nping.path = /ping\n`;
  const files: Record<string, string> = {
    "/etc/php/8.2/fpm/php-fpm.conf": conf("/run/php/php8.2-fpm.sock"),
  };
  const fcgiGet = scriptedFcgi(clock, [{ status: 200, body: "pong", ms: 2 }]);
  const signals = fakeSignals();
  const deps = testDeps({
    clock,
    fcgiGet,
    runner: new FpmHost().runner(),
    host: fakeHost(1000, { HOME: dir, XDG_RUNTIME_DIR: dir }),
    fs: debianFs({ files }),
  });
  const { mode, raw } = parseCommandLine(["watch", "--auto"]);
  const logs = captureLogs();
  try {
    const cfg = await loadConfig(mode as "watch", raw, deps);
    assert.deepEqual(cfg.targets.map((t) => [t.name, t.url.href]), [
      ["php8.2-fpm", "fcgi+unix:///run/php/php8.2-fpm.sock/ping"],
    ]);
    const run = watchForever(cfg, deps, {
      signals: signals.source,
      reload: () => loadConfig("watch", raw, deps),
      lock: memoryLocks(),
      pauses: memoryPauses(),
    });
    assert.ok(await until(() => fcgiGet.calls.length >= 3), "probing the discovered pool");
    // the operator moves the pool to TCP: watched there within a minute, with no signal
    files["/etc/php/8.2/fpm/php-fpm.conf"] = conf("127.0.0.1:9000");
    assert.ok(
      await until(() => fcgiGet.calls.some((c) => c.address.transport === "tcp")),
      logs.lines().join("\n"),
    );
    signals.send("SIGTERM");
    assert.equal(await run, 0);
    assert.ok(
      logs.lines().includes("php-fpm's services or pools changed: discovering them again."),
    );
    assert.ok(logs.lines().some((l) => /^--auto: configuration reloaded \(1 targets\)/.test(l)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--auto: only with watch or check-config, never with a URI; no php-fpm is one line", async () => {
  for (
    const [args, expected] of [
      [
        ["--auto", "http://127.0.0.1/hb", "5", ""],
        /Cannot use --auto without watch or check-config/,
      ],
      [["watch", "--auto", "http://127.0.0.1/hb"], /Cannot use --auto with a URI/],
    ] as const
  ) {
    assert.throws(() => parseCommandLine([...args]), expected);
  }
  // a file with auto = true: its settings, discovery's targets
  const withFile = testDeps({
    fs: debianFs({
      files: {
        "/etc/php-relaunch/config.toml": "auto = true\n[defaults]\ninterval = 2\n",
        "/etc/php/8.2/fpm/php-fpm.conf":
          "[www]\nlisten = /run/php/php8.2-fpm.sock\nping.path = /ping\n",
      },
    }),
  });
  const cfg = await loadConfig("watch", parseCommandLine(["watch"]).raw, withFile);
  assert.deepEqual(cfg.targets.map((t) => [t.name, t.policy.intervalMs]), [["php8.2-fpm", 2000]]);
  assert.notEqual(cfg.discovered, null);
  const none = testDeps({ fs: debianFs({ dirs: { "/etc/init.d": ["nginx"] } }) });
  const { raw } = parseCommandLine(["check-config", "--auto"]);
  await assert.rejects(
    () => loadConfig("check", raw, none),
    (err: ConfigError) => err.issues.some((i) => /--auto: no php-fpm service found/.test(i)),
  );
});

Deno.test("watch: the master's exit wakes the watch at once, once; its watch ends with the loop", async () => {
  const one = CONFIG.slice(CONFIG.indexOf("[[target]]", CONFIG.indexOf("[[target]]") + 1));
  const at: number[] = [];
  const s: Awaited<ReturnType<typeof setup>> = await setup(
    (_url, n) => {
      at.push(s.deps.clock.now());
      if (n === 4) exit();
      if (n === 9) s.signals.send("SIGTERM");
      return 200;
    },
    { "/etc/php-relaunch/config.toml": `[defaults]\ninterval = 1\ntimeout = 1\n\n${one}` },
  );
  let exit = () => {};
  const watched: number[] = [];
  let stopped = 0;
  const deps = {
    ...s.deps,
    watchExit: (pid: number) => {
      watched.push(pid);
      return {
        exited: new Promise<void>((resolve) => exit = resolve),
        stop: () => stopped++,
      };
    },
  };
  try {
    await watchForever(s.cfg, deps, { signals: s.signals.source });
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    // the 4th probe's step saw the exit: the 5th probe came at once, then the interval again
    assert.ok(gaps[3]! < 1000, `gaps ${gaps} watched ${watched}`);
    assert.ok(gaps.slice(4).every((g) => g >= 1000), `gaps ${gaps}`);
    assert.ok(gaps.slice(0, 3).every((g) => g >= 1000), `gaps ${gaps}`);
    assert.deepEqual(watched, [1003], "the master found, watched once");
    assert.equal(stopped, 1, "its watch ended with the loop");
  } finally {
    await s.cleanup();
  }
});
