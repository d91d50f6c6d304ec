// deno-lint-ignore-file no-console -- a benchmark reports on the console
/**
 * `deno task bench`: recovery speed and restart discipline against real nginx + php8.2-fpm on
 * loopback. Faults are injected at a random offset; the heartbeat is sampled every 0.1 s. Each
 * recovery figure is the median of at least 5 runs. Prints a table and writes bench/results.md.
 * Not a test: it reports, it does not fail on timing. Run as root on a machine with the stack
 * (sh scripts/test.sh installs it); it takes about 55 minutes with the defaults.
 *
 *   deno task bench [--runs N] [--broken-minutes M] [--soak-minutes M] [--only NAME] [--verbose]
 *
 * --only runs the scenarios whose name contains NAME ("watch+status", "cron SIGKILL"...) and
 * prints their report without writing bench/results.md. --verbose prints each recovery run's
 * watchdog log, stamped in seconds from the fault, and the rungs its restarts climbed.
 */
import { parseArgs } from "node:util";
import { ROOT, runDir, startCommand } from "../tests/support/cli.ts";
import {
  FPM_PROCESS,
  FPM_SERVICE,
  HEARTBEAT,
  heartbeatOf,
  pids,
  sh,
  Stack,
  waitFor,
} from "../tests/e2e/stack.ts";
import { crashRow, crashToAlert } from "./child_crash.ts";
import { soakTable } from "./soak.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "5" },
    "broken-minutes": { type: "string", default: "5" },
    "soak-minutes": { type: "string", default: "3" },
    only: { type: "string" },
    verbose: { type: "boolean", default: false },
  },
}).values;
const RUNS = Math.max(5, Number(args.runs));
const BROKEN_MS = Number(args["broken-minutes"]) * 60_000;
const SOAK_MS = Number(args["soak-minutes"]) * 60_000;

const WWW = "/var/www/php-heartbeat";
const SLEEP_PAGE = `${WWW}/bench-sleep.php`;
const SLOW_PAGE = `${WWW}/bench-slow.php`;
const UPSTREAM_PAGE = `${WWW}/bench-upstream.php`;
/** The heartbeat vhost runs only the heartbeat: the bench's pages get a server of their own. */
const BENCH_SITE = "/etc/nginx/sites-enabled/php-relaunch-bench";
const BENCH = "http://127.0.0.1:8891";
const BROKEN_POOL = "/etc/php/8.2/fpm/pool.d/zz-php-relaunch-bench-broken.conf";
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** watch+status: watch mode reading php-fpm's status page on its pm.status_listen socket. */
type Mode = "watch" | "cron" | "watch+status";

/** The bench's copy of nginx/php-fpm-status.conf in the www pool, for watch+status. */
const STATUS_POOL = "/etc/php/8.2/fpm/pool.d/zz-php-relaunch-bench-status.conf";
const STATUS_URL = "fcgi://127.0.0.1:909/status";

/** Watchdogs started and not yet stopped: what an interrupted bench must end. */
const running = new Set<Watchdog>();

/** A php-relaunch under test: watch mode, or the positional form started every minute like cron. */
class Watchdog {
  private child: Deno.ChildProcess | null = null;
  private cron: Promise<void> | null = null;
  private stopping = new AbortController();
  /** Cron-form runs still under way. */
  private readonly runs = new Set<Deno.ChildProcess>();
  readonly dir: string;

  constructor(
    readonly mode: Mode,
    dir: string,
    readonly url = HEARTBEAT,
    /** Watch mode's probe interval, in seconds. */
    readonly intervalS = 1,
  ) {
    this.dir = dir;
  }

  private spawn(argv: string[]): Deno.ChildProcess {
    const [cmd, a] = startCommand(argv);
    return new Deno.Command(cmd, {
      args: a,
      cwd: ROOT,
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin", HOME: "/root", RUST_BACKTRACE: "0" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  private common(): string[] {
    return [
      "--service",
      FPM_SERVICE,
      "--log-file",
      `${this.dir}/log`,
      "--state-dir",
      `${this.dir}/state`,
      "--lock-file",
      `${this.dir}/lock`,
      // milliseconds in the log's times, for --verbose
      ...(args.verbose ? ["--log-format", "json"] : []),
    ];
  }

  async start(): Promise<void> {
    running.add(this);
    if (this.mode !== "cron") {
      this.child = this.spawn([
        "watch",
        this.url,
        "--timeout",
        "5",
        "--interval",
        String(this.intervalS),
        ...(this.mode === "watch+status" ? ["--status-url", STATUS_URL] : []),
        ...this.common(),
      ]);
      // ready when it logs that it watches
      await waitFor(async () => /Watching/.test(await this.log()), 30_000, 100);
      return;
    }
    // cron: the original's line, started at every minute boundary from now on
    const started = Date.now();
    this.cron = (async () => {
      for (let k = 0; !this.stopping.signal.aborted; k++) {
        const due = started + k * 60_000;
        await sleep(Math.max(0, due - Date.now()));
        if (this.stopping.signal.aborted) break;
        const run = this.spawn([this.url, "5", "", ...this.common()]);
        this.runs.add(run);
        void run.status.then(() => this.runs.delete(run));
      }
    })();
  }

  log(): Promise<string> {
    return Deno.readTextFile(`${this.dir}/log`).catch(() => "");
  }

  async restarts(): Promise<number> {
    return (await this.log()).split("\n").filter((l) => /PHP restart(ed|\s+failed)/.test(l))
      .length;
  }

  /** The rungs each of its restarts climbed, from its incident log, one line each. */
  async rungs(): Promise<string> {
    const text = await Deno.readTextFile(`${this.dir}/state/incidents.jsonl`).catch(() => "");
    return text.split("\n").filter((l) => l !== "").map((line) => {
      const steps: string[] = JSON.parse(line).restart?.steps ?? [];
      return `    rungs: ${steps.join("; ")}`;
    }).join("\n");
  }

  /** Ends what this watchdog started at once (the bench is interrupted): no waiting. */
  kill(): void {
    this.stopping.abort();
    try {
      this.child?.kill("SIGKILL");
    } catch { /* gone */ }
    for (const run of this.runs) {
      try {
        run.kill("SIGKILL");
      } catch { /* gone */ }
    }
  }

  async stop(): Promise<void> {
    running.delete(this);
    this.stopping.abort();
    if (this.child) {
      this.child.kill("SIGTERM");
      await this.child.status;
    }
    await this.cron;
    // a cron run under way finishes by itself within its minute: wait for its lock
    await waitFor(
      async () => {
        const r = await sh("flock", ["-n", `${this.dir}/lock`, "true"]);
        return r.code === 0;
      },
      120_000,
      500,
    );
  }
}

/** Samples the heartbeat every 0.1 s from `since`; resolves to ms from `since` to the first 200. */
async function firstOkAfter(since: number, withinMs: number): Promise<number | null> {
  let found: number | null = null;
  const inflight: Promise<void>[] = [];
  while (found === null && Date.now() - since < withinMs) {
    inflight.push((async () => {
      if ((await heartbeatOf(HEARTBEAT, 1000)) === "200" && found === null) {
        found = Date.now() - since;
      }
    })());
    await sleep(100);
  }
  await Promise.all(inflight);
  return found;
}

async function allFpm(signal: Deno.Signal): Promise<number[]> {
  const list = await pids(FPM_PROCESS);
  for (const pid of list) {
    try {
      Deno.kill(pid, signal);
    } catch { /* gone */ }
  }
  return list;
}

/** pm.max_children of Debian's www pool. */
const FPM_WORKERS = 5;
/** Queued sleepers of the deep-backlog fault: more than a reloaded pool has workers. */
const DEEP = FPM_WORKERS + 2;

/**
 * Occupies every worker with requests that sleep 300 s and leaves `queued` more of them in the
 * listen backlog; returns, once the heartbeat no longer gets a worker, how to release them.
 */
async function exhausted(queued: number): Promise<() => Promise<void>> {
  const ac = new AbortController();
  const requests = Array.from(
    { length: FPM_WORKERS + queued },
    () =>
      fetch(`${BENCH}/bench-sleep.php`, { signal: ac.signal })
        .then((r) => r.body?.cancel())
        .catch(() => {}),
  );
  const release = async () => {
    ac.abort();
    await Promise.all(requests);
    // php does not notice an aborted client while it sleeps: workers that took a queued sleeper
    // after the watchdog's reload would sleep on into the next run and make its fault bigger
    await sh("service", [FPM_SERVICE, "restart"]);
  };
  const full = await waitFor(
    async () => (await heartbeatOf(HEARTBEAT, 500)) === "timeout",
    10_000,
    50,
  );
  if (full === null) throw new Error("the pool could not be exhausted");
  return release;
}

/**
 * An upstream that stops answering for `ms`, under steady load: a TCP listener on loopback that
 * accepts and never answers, which the bench's page reads from, 8 requests at a time (more than
 * the pool has workers); then it lets its connections go and the pool drains.
 */
async function upstreamSilent(ms: number): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const c of listener) conns.push(c);
    } catch { /* closed */ }
  })();
  await Deno.writeTextFile(
    UPSTREAM_PAGE,
    `<?php $fp = @fsockopen('127.0.0.1', ${listener.addr.port}, $e, $s, 5);
if (!$fp) { echo 'down'; exit; }
stream_set_timeout($fp, 600); fwrite($fp, "SELECT 1\\n"); echo fgets($fp) === false ? 'closed' : 'row';
`,
  );
  const until = Date.now() + ms;
  const client = async () => {
    for (let i = 0; i < 5000 && Date.now() < until; i++) {
      await heartbeatOf(`${BENCH}/bench-upstream.php`, 1500);
      await sleep(100);
    }
  };
  await Promise.all(Array.from({ length: 8 }, client));
  listener.close();
  for (const c of conns.splice(0)) c.close();
  await accepting;
  await sleep(10_000);
}

const FAULTS = {
  "SIGKILL of all php-fpm": async () => {
    await allFpm("SIGKILL");
    return () => Promise.resolve();
  },
  "SIGSTOP of all php-fpm": async () => {
    const stopped = await allFpm("SIGSTOP");
    return () => {
      for (const pid of stopped) {
        try {
          Deno.kill(pid, "SIGCONT");
        } catch { /* killed by the watchdog */ }
      }
      return Promise.resolve();
    };
  },
  "pool exhausted (workers sleep 300 s)": () => exhausted(2),
  // more sleepers queued than the pool has workers: after a reload, the new workers take them
  "pool exhausted, a pool's worth more queued": () => exhausted(DEEP),
} as const;

/**
 * `RUNS` faults, each on a fresh watchdog; the time from each to the first 200. `intervalS`, for
 * watch mode: its probe interval, and the fault comes at a random moment of the cycle after the
 * first (its master found, and watched); without, within 2 s of the start.
 */
async function recovery(
  stack: Stack,
  mode: Mode,
  fault: keyof typeof FAULTS,
  root: string,
  intervalS?: number,
) {
  const figures: number[] = [];
  const restarts: number[] = [];
  const name = `${mode} ${fault}${intervalS === undefined ? "" : `, interval ${intervalS} s`}`;
  for (let run = 0; run < RUNS; run++) {
    await stack.healthy();
    const dir = await Deno.makeTempDir({ dir: root });
    const dog = new Watchdog(mode, dir, HEARTBEAT, intervalS);
    await dog.start();
    // a random offset: within the minute for cron, within 2 s or the second cycle for watch
    await sleep(
      mode === "cron"
        ? Math.random() * 60_000
        : intervalS === undefined
        ? Math.random() * 2000
        : (1 + Math.random()) * intervalS * 1000,
    );
    const release = await FAULTS[fault]();
    const at = Date.now();
    const ms = await firstOkAfter(at, mode === "cron" ? 200_000 : 120_000);
    await release();
    await dog.stop();
    restarts.push(await dog.restarts());
    if (ms !== null) figures.push(ms);
    console.error(`  ${name} #${run + 1}: ${ms === null ? "not recovered" : `${ms} ms`}`);
    if (args.verbose) console.error(`${relativeTo(at, await dog.log())}\n${await dog.rungs()}`);
  }
  return { figures, restarts, failed: RUNS - figures.length };
}

/** A JSON watchdog log (see --verbose) as lines stamped in seconds from `at` (the fault). */
function relativeTo(at: number, log: string): string {
  return log.split("\n").filter((l) => l !== "").map((line) => {
    try {
      const { time, message } = JSON.parse(line);
      return `    ${((Date.parse(time) - at) / 1000).toFixed(1).padStart(6)} ${message}`;
    } catch {
      return `    ${line}`;
    }
  }).join("\n");
}

/** Counts restarts while `during` runs; the watchdog runs throughout. */
async function restartCount(
  stack: Stack,
  mode: Mode,
  root: string,
  during: () => Promise<void>,
  url = HEARTBEAT,
  read?: (log: string) => void,
): Promise<number> {
  await stack.healthy();
  const dir = await Deno.makeTempDir({ dir: root });
  const dog = new Watchdog(mode, dir, url);
  await dog.start();
  await sleep(Math.random() * 2000);
  await during();
  await dog.stop();
  read?.(await dog.log());
  return await dog.restarts();
}

/**
 * The recovery medians of the full run before this one, from results.md, shown beside this
 * run's so that a change's effect is on one line.
 */
async function previousMedians(): Promise<{ at: string; medians: Map<string, string> }> {
  const text = await Deno.readTextFile(`${ROOT}/bench/results.md`).catch(() => "");
  const at = /^(\d{4}-\d\d-\d\d)T/m.exec(text)?.[1] ?? "none";
  const medians = new Map<string, string>();
  for (const line of text.split("\n")) {
    // | mode | fault | runs | min | median | ...
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length >= 9 && /^\d+$/.test(cells[3] ?? "") && /^[\d.]+$/.test(cells[5] ?? "")) {
      medians.set(`${cells[1]} | ${cells[2]}`, cells[5]!);
    }
  }
  return { at, medians };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
    ? s[(s.length - 1) / 2]!
    : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const secs = (ms: number, digits = 1) => Number.isNaN(ms) ? "-" : (ms / 1000).toFixed(digits);

/** Watch mode's intervals of the exit watch's rows. */
const EXIT_WATCH_INTERVALS = [5, 1] as const;
/**
 * The medians (min-max) of SIGKILL to 200 before the master's exit watch: measured 2026-12-03 on
 * the bench's machine by a throw-away script, 5 runs each, the watch disabled; not measured again.
 */
const WITHOUT_EXIT_WATCH: Record<(typeof EXIT_WATCH_INTERVALS)[number], string> = {
  5: "2.3 (0.72-4.2)",
  1: "0.81 (0.19-1.12)",
};

async function machine(): Promise<string> {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1];
  const mem = (await Deno.readTextFile("/proc/meminfo")).match(/MemTotal:\s*(\d+)/)?.[1];
  const os = (await Deno.readTextFile("/etc/os-release")).match(/PRETTY_NAME="(.*)"/)?.[1];
  const nginx = (await sh("nginx", ["-v"])).out.trim();
  const php = (await sh(`/usr/sbin/${FPM_PROCESS}`, ["-v"])).out.split("\n")[0];
  return `${navigator.hardwareConcurrency} cores (${cpu}), ${
    Math.round(Number(mem) / 1048576)
  } GiB, ${os}, Deno ${Deno.version.deno}, ${nginx}, ${php}; load average at the start ${
    Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
  }`;
}

/** Puts back what the bench changed: pools, pages, the nginx site, its folder; idempotent. */
async function cleanUp(stack: Stack, work: { remove(): Promise<void> }): Promise<void> {
  for (const dog of running) dog.kill();
  if (await Deno.remove(STATUS_POOL).then(() => true, () => false)) {
    await sh("service", [FPM_SERVICE, "restart"]);
    await Deno.remove("/var/log/php8.2-fpm.www.slow.log").catch(() => {});
  }
  await Deno.remove(BROKEN_POOL).catch(() => {});
  await Deno.remove(SLEEP_PAGE).catch(() => {});
  await Deno.remove(SLOW_PAGE).catch(() => {});
  await Deno.remove(UPSTREAM_PAGE).catch(() => {});
  await Deno.remove(BENCH_SITE).catch(() => {});
  await sh("service", ["nginx", "reload"]);
  await stack.healthy().catch(() => {});
  await stack.down();
  await work.remove();
}

async function main() {
  if (Deno.uid() !== 0) throw new Error("run as root: the benchmark restarts php-fpm");
  const stack = await Stack.up();
  // below the state root: the watchdog runs with the shipped permissions
  const work = await runDir("bench-");
  // Ctrl-C in a 50-minute run must not leave the bench's site, pages and pools behind
  // once: an interrupted run's scenario fails on its killed watchdog and ends in `finally` too
  let cleaning: Promise<void> | null = null;
  const cleanUpOnce = () => cleaning ??= cleanUp(stack, work);
  let interrupted = false;
  const onSignal = (signal: Deno.Signal) => () => {
    interrupted = true;
    console.error(`${signal}: putting back what the bench changed`);
    cleanUpOnce().finally(() => Deno.exit(130));
  };
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const listener = onSignal(signal);
    Deno.addSignalListener(signal, listener);
    return () => Deno.removeSignalListener(signal, listener);
  });
  const root = work.path;
  await Deno.writeTextFile(SLEEP_PAGE, "<?php sleep(300); echo 'done';\n");
  await Deno.writeTextFile(SLOW_PAGE, "<?php usleep(random_int(1000000, 2000000)); echo 'ok';\n");
  await Deno.writeTextFile(
    BENCH_SITE,
    `server {
    listen 127.0.0.1:8891;
    access_log off;
    root ${WWW};
    location ~ ^/bench-(sleep|slow|upstream)\\.php$ {
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass unix:/run/php/php8.2-fpm.sock;
        fastcgi_read_timeout 600s;
    }
}
`,
  );
  await sh("service", ["nginx", "reload"]);
  const rows: string[] = [];
  const exitRows: string[] = [];
  const counts: string[] = [];
  const started = Date.now();
  const env = await machine();
  // the first `deno run` of a checkout transpiles and caches the sources, touching code and
  // memory no later run does (about 11 MB more here): no figure may include that
  const [cmd, warm] = startCommand(["--version"]);
  await new Deno.Command(cmd, { args: warm, cwd: ROOT, stdout: "null", stderr: "null" }).output();
  const want = (name: string) => !args.only || name.includes(args.only);
  const before = await previousMedians();
  try {
    for (const mode of ["watch", "cron", "watch+status"] as const) {
      // the status pool serves every watch+status scenario, --only picking one of them too
      const wanted = Object.keys(FAULTS).some((fault) => want(`${mode} ${fault}`)) ||
        want(`${mode} upstream`);
      if (mode === "watch+status" && wanted) {
        await Deno.copyFile(`${ROOT}/nginx/php-fpm-status.conf`, STATUS_POOL);
        await sh("service", [FPM_SERVICE, "restart"]);
      }
      for (const fault of Object.keys(FAULTS) as (keyof typeof FAULTS)[]) {
        if (!want(`${mode} ${fault}`)) continue;
        // the cron form's kill-and-start drops the backlog with the workers: no different there
        if (mode === "cron" && fault.includes("queued")) continue;
        const r = await recovery(stack, mode, fault, root);
        rows.push(
          `| ${mode} | ${fault} | ${r.figures.length} | ${secs(Math.min(...r.figures))} | ${
            secs(median(r.figures))
          } | ${secs(Math.max(...r.figures))} | ${median(r.restarts)} | ${r.failed} | ${
            before.medians.get(`${mode} | ${fault}`) ?? "-"
          } |`,
        );
      }
      if (mode === "watch+status" && want(`${mode} upstream`)) {
        // restarting cannot help while every worker waits on one upstream: held, told once
        let kills = 0;
        const n = await restartCount(stack, mode, root, () => upstreamSilent(60_000), HEARTBEAT, (
          log,
        ) => kills = log.split("\n").filter((l) => / PHP upstream: .*kill round/.test(l)).length);
        counts.push(
          `| ${mode} | an upstream that stops answering, under load (60 s) | ${n} (kill rounds: ${kills}) | 0 (1 kill round) |`,
        );
      }
      // the status page changes what happens on timeouts; the counts below have none of those
      if (mode === "watch+status") continue;
      if (want(`${mode} load`)) {
        // 60 s on a heartbeat that takes 1-2 s to answer: slow, but within the 5 s timeout
        const n = await restartCount(
          stack,
          mode,
          root,
          () => sleep(60_000),
          `${BENCH}/bench-slow.php`,
        );
        counts.push(`| ${mode} | 60 s of a heartbeat answering in 1-2 s | ${n} | 0 |`);
      }
      if (want(`${mode} stall`)) {
        const stalls: number[] = [];
        for (let run = 0; run < RUNS; run++) {
          stalls.push(
            await restartCount(stack, mode, root, async () => {
              const stopped = await allFpm("SIGSTOP");
              await sleep(500);
              for (const pid of stopped) Deno.kill(pid, "SIGCONT");
              await sleep(mode === "watch" ? 12_000 : 15_000);
            }),
          );
        }
        counts.push(`| ${mode} | a single 0.5 s stall (${RUNS} runs) | ${stalls.join(", ")} | 0 |`);
      }
      if (want(`${mode} nginx`)) {
        const n = await restartCount(stack, mode, root, async () => {
          await sh("service", ["nginx", "stop"]);
          await sleep(mode === "watch" ? 30_000 : 70_000);
          await sh("service", ["nginx", "start"]);
          await sleep(3000);
        });
        counts.push(`| ${mode} | nginx down (${mode === "watch" ? 30 : 70} s) | ${n} | 0 |`);
      }
      if (want(`${mode} broken`)) {
        const n = await restartCount(stack, mode, root, async () => {
          await Deno.writeTextFile(BROKEN_POOL, "this is not a pool configuration\n");
          await allFpm("SIGKILL");
          await sleep(BROKEN_MS);
          await Deno.remove(BROKEN_POOL);
        });
        counts.push(
          `| ${mode} | php-fpm cannot start, broken pool config (${
            BROKEN_MS / 60_000
          } min) | ${n} | at most 3 |`,
        );
      }
    }
    // the master's exit wakes watch mode between probes, whatever its interval
    for (const interval of EXIT_WATCH_INTERVALS) {
      const fault = "SIGKILL of all php-fpm";
      if (!want(`watch SIGKILL between probes, interval ${interval} s`)) continue;
      const r = await recovery(stack, "watch", fault, root, interval);
      const cells = [Math.min(...r.figures), median(r.figures), Math.max(...r.figures)];
      exitRows.push(
        `| watch | ${interval} s | ${r.figures.length} | ${
          cells.map((ms) => secs(ms, 2)).join(" | ")
        } | ${WITHOUT_EXIT_WATCH[interval]} |`,
      );
    }
    const crashes = want("crash") ? [crashRow(await crashToAlert(root, RUNS))] : [];
    let soak = "";
    if (want("soak")) {
      await stack.healthy();
      soak =
        `Watch mode probing every 1 s (\`deno run\` with the shipped flags, not the compiled binary),
measured from /proc over ${SOAK_MS / 60_000} minutes after 10 s of start-up: CPU (utime + stime),
resident memory at the end and its highest sample every 5 s, anonymous and file-backed pages at
the end. "After alerts": the same once it has restarted a SIGKILLed php-fpm and told it by SMTP
(aiosmtpd) and webhook. An empty program run with the same \`deno run\` flags is measured the same
way. Targets: at most 0.35 % of a core; at most 45 MB resident (16 MB anonymous), 50 MB after alerts.

${await soakTable(root, SOAK_MS, true)}

Why memory is above its target, measured by hand: [memory.md](memory.md).`;
    }
    const report = `# php-relaunch benchmark

${new Date().toISOString()}, ${((Date.now() - started) / 60_000).toFixed(0)} minutes.
Machine: ${env}.

Real nginx + php8.2-fpm on loopback, the repo's heartbeat vhost. Watch mode: \`php-relaunch watch
<URI> --interval 1 --timeout 5\` (failure_threshold 2, timeout_threshold 2, confirm_delay 1 s,
rungs kill_stuck > reload > restart > kill). Cron form: \`php-relaunch <URI> 5 ''\` started at
every minute boundary, as cron would. watch+status: watch mode with \`--status-url
${STATUS_URL}\`, the www pool given nginx/php-fpm-status.conf (pm.status_listen): a timeout
is judged busy or hung from the status page within about a second, and a hung pool's stuck
workers are killed first. Faults at a random offset (within 2 s for watch, within the minute for
cron); the heartbeat sampled every 0.1 s.

## Recovery: fault to the first 200 (seconds)

| mode | fault | runs | min | median | max | restarts (median) | not recovered | median, run before (${before.at}) |
|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}

Targets: SIGKILL <= 1.0 s median in watch mode (the process table makes the crash certain: the
master is gone, so no confirming probe; the kill rung starts the pool); SIGSTOP <= 7 s median
(every process of the pool stopped makes the hang certain at the first timeout); exhaustion
<= timeout x timeout_threshold + interval + 2 s (13 s in watch mode); with the status page, a hang
approaches timeout + interval + the restart (about 8 s). The cron form waits for the
next minute's run when the fault falls between runs. "A pool's worth more queued": ${DEEP} more
sleepers wait in the listen backlog, which a reload (SIGUSR2) keeps: its new workers take them, the
reload rung waits start_timeout (10 s), and \`restart\`, which closes the socket, ends it. With the
status page, kill_stuck ends the stuck workers, queued sleepers take their successors, the pool is
seen full a second later, and the reload that follows at once finds room beside the two still queued.
Each exhaustion run starts from a freshly restarted pool.

## SIGKILL between probes: the master's exit watch (seconds)

| mode | interval | runs | min | median | max | median without the exit watch |
| --- | --- | --- | --- | --- | --- | --- |
${exitRows.join("\n")}

Watch mode at \`--interval 5\` and \`--interval 1\` (\`--timeout 5\`), a SIGKILL of every php-fpm
process at a random moment of the probe cycle after the first, the time from the kill to the first
200 (sampled every 0.1 s). The watch waits on the master with \`pidwait -F\` (a pidfd: it wakes on
the exit itself), and the probe it wakes finds the crash certain. Targets: median <= 1.0 s at
interval 5 s, <= 0.6 s at 1 s. "Without": the earlier measurement, before the exit watch
(2026-12-03, a throw-away script, the watch disabled, 5 runs each: median and min-max); the bench
does not measure it again.

## Restarts caused

| mode | situation | restarts | target |
|---|---|---|---|
${counts.join("\n")}

## Resources

${soak}

## Child crash loops: the first crash to the alert (seconds)

| mode | situation | runs | min | median | max | no alert in 30 s | php-fpm restarted |
|---|---|---|---|---|---|---|---|
${crashes.join("\n")}

A page whose worker sends itself SIGSEGV, requested every 0.1 s through nginx (a php-fpm8.2
master of its own, pm static 2); watch mode probing every 1 s, warn_child_crashes 5 in 60 s. From
nginx's first 502 to the mail's arrival at a local SMTP server (aiosmtpd), polled every 50 ms.
Target: within 30 s of the loop's start, no restart.
`;
    // a partial run is printed, not written: results.md keeps the figures of a full one
    if (!args.only) await Deno.writeTextFile(`${ROOT}/bench/results.md`, report);
    console.log(report);
  } catch (err) {
    if (!interrupted) throw err;
  } finally {
    for (const remove of listeners) remove();
    await cleanUpOnce();
  }
}

if (import.meta.main) await main();
