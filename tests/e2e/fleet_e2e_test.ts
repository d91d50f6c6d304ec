/**
 * The restart cap across a fleet, against Debian's etcd: three etcd members on loopback (their
 * own data folders in a temporary folder; the package's service is left alone), three php-fpm8.2
 * masters of their own (services php8.2-fpm-f1..f3, pinged over FastCGI), and three watchdogs,
 * each the real CLI in watch mode with its own host name in `[fleet]`. Every pool is frozen at
 * once (SIGSTOP: a certain hang), and the logs and a loopback webhook receiver say what the fleet
 * did. Only processes this test started are ended, by pid.
 */
import assert from "node:assert/strict";
import { runDir } from "../support/cli.ts";
import { ExtraPool, FPM_PROCESS, freePort, waitFor } from "./stack.ts";
import { WatchProcess } from "./watch_process.ts";
import { directFcgiGet } from "../../src/probe/fcgi.ts";

const pools = [1, 2, 3].map((i) =>
  new ExtraPool({
    suffix: `f${i}`,
    nginxPort: null,
    poolLines: ["pm = static", "pm.max_children = 2", "ping.path = /ping"],
  })
);

/** Three etcd members on loopback, started by this test. */
class EtcdCluster {
  readonly clientPorts = [freePort(), freePort(), freePort()];
  private readonly peerPorts = [freePort(), freePort(), freePort()];
  readonly members: (Deno.ChildProcess | null)[] = [null, null, null];

  constructor(private readonly dir: string) {}

  get urls(): string[] {
    return this.clientPorts.map((p) => `http://127.0.0.1:${p}`);
  }

  async start(): Promise<void> {
    const cluster = this.peerPorts.map((p, i) => `m${i + 1}=http://127.0.0.1:${p}`).join(",");
    for (let i = 0; i < 3; i++) {
      this.members[i] = new Deno.Command("/usr/bin/etcd", {
        args: [
          "--name",
          `m${i + 1}`,
          "--data-dir",
          `${this.dir}/m${i + 1}`,
          "--listen-client-urls",
          this.urls[i]!,
          "--advertise-client-urls",
          this.urls[i]!,
          "--listen-peer-urls",
          `http://127.0.0.1:${this.peerPorts[i]}`,
          "--initial-advertise-peer-urls",
          `http://127.0.0.1:${this.peerPorts[i]}`,
          "--initial-cluster",
          cluster,
          "--initial-cluster-token",
          `php-relaunch-test-${this.peerPorts[0]}`,
          "--initial-cluster-state",
          "new",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
    }
    const up = await waitFor(async () => (await this.healthy()).every(Boolean), 60_000, 300);
    assert.ok(up !== null, "the three etcd members answer");
  }

  /** Whether each member answers a range (through its JSON gateway). */
  async healthy(): Promise<boolean[]> {
    return await Promise.all(this.urls.map(async (u) => {
      try {
        const r = await fetch(`${u}/v3/kv/range`, {
          method: "POST",
          body: JSON.stringify({ key: btoa("/") }),
          signal: AbortSignal.timeout(1000),
        });
        await r.body?.cancel();
        return r.status === 200;
      } catch {
        return false;
      }
    }));
  }

  /** The keys under `prefix` (for the test's own look). */
  async keys(prefix: string): Promise<string[]> {
    for (const u of this.urls) {
      try {
        const r = await fetch(`${u}/v3/kv/range`, {
          method: "POST",
          body: JSON.stringify({ key: btoa(prefix), range_end: btoa(prefix.slice(0, -1) + "0") }),
          signal: AbortSignal.timeout(1000),
        });
        const json = await r.json() as { kvs?: { key: string }[] };
        return (json.kvs ?? []).map((kv) => atob(kv.key));
      } catch { /* the next member */ }
    }
    return [];
  }

  /** Ends member `i` (SIGKILL, by its pid) and waits for it. */
  async kill(i: number): Promise<void> {
    const child = this.members[i];
    if (child === null || child === undefined) return;
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch { /* gone */ }
    await child.status;
    this.members[i] = null;
  }

  async stop(): Promise<void> {
    for (let i = 0; i < 3; i++) await this.kill(i);
  }
}

/** A loopback webhook receiver: the subjects of the alerts posted to it. */
function webhookReceiver() {
  const subjects: string[] = [];
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async (request) => {
      const body = await request.json().catch(() => ({})) as { subject?: string };
      subjects.push(String(body.subject ?? ""));
      return new Response("ok");
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    subjects,
    fleet: () => subjects.filter((s) => / PHP fleet-wide failure$/.test(s)),
    resolved: () => subjects.filter((s) => / PHP fleet-wide failure resolved$/.test(s)),
    async close() {
      ac.abort();
      await server.finished;
    },
  };
}

function config(
  dir: string,
  i: number,
  etcd: string[],
  hook: string,
  share: number,
): string {
  const pool = pools[i]!;
  return `
[defaults]
interval = 0.5
timeout = 2
grace_period = 2
start_timeout = 5
rungs = ["kill"]
max_restarts = 20

[log]
file = "${dir}/watch.log"
format = "json"

[state]
dir = "${dir}/state"
lock_dir = "${dir}"

[webhook]
url = "${hook}"

[fleet]
etcd = [${etcd.map((u) => `"${u}"`).join(", ")}]
hosts = ["w1", "w2", "w3"]
host = "w${i + 1}"
shared_cause_share = ${share}
lease_ttl = 6
timeout = 1

[[target]]
name = "f${i + 1}"
url = "fcgi+unix://${pool.socket}/ping"
service = "${pool.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${pool.pidFile}"
fpm_config = "${pool.files.conf}"
`;
}

/** Whether a pool answers its ping. */
async function pings(pool: ExtraPool): Promise<boolean> {
  try {
    const r = await directFcgiGet(
      { address: { transport: "unix", path: pool.socket }, path: "/ping", query: "" },
      AbortSignal.timeout(1000),
    );
    return r.body.startsWith("pong");
  } catch {
    return false;
  }
}

/** Freezes (SIGSTOP) or thaws (SIGCONT) every process of every pool. */
/**
 * Sends `signal` to every process of every pool; `workersOnly`: not to the masters (stopped
 * workers under a running master time out, a failure the process table does not make certain;
 * every process stopped is a certain hang, which a shared cause never holds).
 */
async function signalPools(signal: "SIGSTOP" | "SIGCONT", workersOnly = false): Promise<void> {
  const all = (await Promise.all(pools.map((p) => p.pids()))).flat();
  assert.ok(all.length >= 9, `every pool has its processes: ${all}`);
  const masters = workersOnly
    ? await Promise.all(pools.map(async (p) => Number((await Deno.readTextFile(p.pidFile)).trim())))
    : [];
  for (const pid of all.filter((p) => !masters.includes(p))) {
    try {
      Deno.kill(pid, signal);
    } catch { /* gone */ }
  }
}

interface Line {
  time: string;
  message: string;
  target?: string;
}

async function jsonLines(watch: WatchProcess): Promise<Line[]> {
  return (await watch.lines()).flatMap((l) => {
    try {
      return [JSON.parse(l) as Line];
    } catch {
      return [];
    }
  });
}

/** Each watchdog's restart windows (slot taken → done), after `since`. */
async function windows(
  watches: WatchProcess[],
  since: number,
): Promise<{ host: number; start: number; end: number }[]> {
  const out: { host: number; start: number; end: number }[] = [];
  for (const [i, w] of watches.entries()) {
    let start: number | null = null;
    for (const line of await jsonLines(w)) {
      const at = Date.parse(line.time);
      if (at < since) continue;
      if (/^Fleet restart slot taken/.test(line.message)) start = at;
      if (/^Restart done: letting go/.test(line.message) && start !== null) {
        out.push({ host: i + 1, start, end: at });
        start = null;
      }
    }
  }
  return out.sort((a, b) => a.start - b.start);
}

/** Freezes every pool and checks that the three restarts that follow never overlap. */
async function oneAtATime(watches: WatchProcess[], since: number, what: string): Promise<void> {
  await signalPools("SIGSTOP");
  const done = await waitFor(
    async () => (await windows(watches, since)).length >= 3,
    90_000,
    300,
  );
  const w = await windows(watches, since);
  // deno-lint-ignore no-console -- the figures, for the report
  console.log(
    `${what}:`,
    w.map((x) => `w${x.host} ${x.start - since}-${x.end - since}`).join(", "),
  );
  assert.ok(done !== null, `three restarts: ${JSON.stringify(w)}`);
  assert.deepEqual(w.map((x) => x.host).sort(), [1, 2, 3]);
  for (let i = 1; i < w.length; i++) {
    assert.ok(w[i]!.start >= w[i - 1]!.end, `restart windows overlap: ${JSON.stringify(w)}`);
  }
}

async function count(watches: WatchProcess[], pattern: RegExp, since = 0): Promise<number[]> {
  return await Promise.all(
    watches.map(async (w) =>
      (await jsonLines(w)).filter((l) => Date.parse(l.time) >= since && pattern.test(l.message))
        .length
    ),
  );
}

Deno.test({
  name:
    "e2e: fleet: three watchdogs on etcd restart one at a time, hold on a shared cause, act alone without etcd",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const temp = await Deno.makeTempDir({ prefix: "php-relaunch-etcd-" });
    const dirs = await Promise.all([1, 2, 3].map((i) => runDir(`fleet${i}-`)));
    const etcd = new EtcdCluster(temp);
    const hook = webhookReceiver();
    let watches: WatchProcess[] = [];
    const stopWatches = async () => {
      for (const w of watches) await w.stop();
      watches = [];
    };
    const startWatches = async (share: number, etcdUrls: string[]) => {
      // a step that failed before its end leaves its watchdogs: they are ended first
      await stopWatches();
      for (const [i, d] of dirs.entries()) {
        const path = `${d.path}/config.toml`;
        await Deno.remove(`${d.path}/watch.log`).catch(() => {});
        await Deno.writeTextFile(path, config(d.path, i, etcdUrls, hook.url, share));
        watches.push(WatchProcess.start(path, `${d.path}/watch.log`));
      }
      for (const w of watches) {
        assert.ok(await w.waitForLine(/Watching 1 targets/, 60_000), "watch started");
      }
      // a few healthy probes first
      await new Promise((r) => setTimeout(r, 1500));
    };
    const allHealthy = async () =>
      assert.ok(
        await waitFor(
          async () => (await Promise.all(pools.map(pings))).every(Boolean),
          60_000,
          250,
        ) !==
          null,
        "every pool answers again",
      );
    try {
      for (const pool of pools) await pool.create();
      await etcd.start();

      await t.step("all three frozen at once: restarts one at a time, no fleet alert", async () => {
        await startWatches(1, etcd.urls);
        const since = Date.now();
        await oneAtATime(watches, since, "restart windows (ms from the freeze)");
        await allHealthy();
        assert.deepEqual(hook.fleet(), [], "a share of 1 holds nothing");
      });

      await t.step("one etcd member killed: still one at a time", async () => {
        await etcd.kill(0);
        const since = Date.now();
        // wait out the grace period of the last restart
        await new Promise((r) => setTimeout(r, 2500));
        await oneAtATime(watches, since, "restart windows, one member down");
        assert.deepEqual(await count(watches, /Cannot reach etcd/), [0, 0, 0], "two members serve");
        await allHealthy();
        await stopWatches();
      });

      await t.step("a share below 1/3: restarts held, one fleet alert, one resolved", async () => {
        await startWatches(0.3, etcd.urls);
        const since = Date.now();
        // the workers stopped, their masters running: timeouts the process table does not make
        // certain (a certain hang is never held)
        await signalPools("SIGSTOP", true);
        const held = await waitFor(
          async () => (await count(watches, /^Restart held/, since)).every((n) => n === 1),
          60_000,
          300,
        );
        assert.ok(held !== null, `each holds: ${await count(watches, /^Restart held/, since)}`);
        // a while longer: every probe fails and asks again, and nothing more is said or sent
        await new Promise((r) => setTimeout(r, 4000));
        assert.deepEqual(await count(watches, /^Restart held/, since), [1, 1, 1]);
        assert.deepEqual(await count(watches, /^Fleet restart slot taken/, since), [0, 0, 0]);
        assert.ok(
          await waitFor(() => Promise.resolve(hook.fleet().length >= 1), 20_000, 200) !== null,
          "the fleet alert arrives",
        );
        assert.equal(hook.fleet().length, 1, `one fleet alert: ${hook.subjects.join(" | ")}`);
        assert.ok(!(await Promise.all(pools.map(pings))).some(Boolean), "nobody restarted");
        // the shared cause ends
        await signalPools("SIGCONT");
        await allHealthy();
        assert.ok(
          // resolved once the share has stayed below the threshold for 60 s
          await waitFor(() => Promise.resolve(hook.resolved().length >= 1), 90_000, 200) !== null,
          "resolved",
        );
        await new Promise((r) => setTimeout(r, 2000));
        // deno-lint-ignore no-console -- the figures, for the report
        console.log("fleet alerts:", hook.fleet().length, "resolved:", hook.resolved().length);
        assert.equal(hook.fleet().length, 1);
        assert.equal(hook.resolved().length, 1);
        assert.ok(
          await waitFor(
            async () => (await etcd.keys("/php-relaunch/")).length === 0,
            20_000,
            300,
          ) !==
            null,
          `no key left: ${await etcd.keys("/php-relaunch/")}`,
        );
      });

      await t.step("etcd gone: each watchdog acts alone, and says so once", async () => {
        await etcd.stop();
        const since = Date.now();
        const before = hook.fleet().length;
        await signalPools("SIGSTOP");
        await allHealthy();
        // a second round: still alone, still said once
        await new Promise((r) => setTimeout(r, 3000));
        await signalPools("SIGSTOP");
        await allHealthy();
        assert.deepEqual(await count(watches, /Cannot reach etcd/, since), [1, 1, 1]);
        assert.equal(hook.fleet().length, before, "no fleet alert without etcd");
        await stopWatches();
      });
    } finally {
      await stopWatches().catch(() => {});
      await signalPools("SIGCONT").catch(() => {});
      await etcd.stop();
      await hook.close();
      for (const pool of pools) await pool.remove();
      for (const d of dirs) await d.remove();
      await Deno.remove(temp, { recursive: true }).catch(() => {});
    }
  },
});
