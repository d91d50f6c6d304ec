/**
 * The master's exit watch in the cron form, against Debian's nginx and php8.2-fpm: a run probing
 * every 10 s sees a SIGKILL of the pool between two probes at once (its watcher, pidwait or tail,
 * wakes it), restarts php-fpm well before its next probe was due, and leaves no watcher behind
 * when it ends, though the master it watched last still runs.
 */
import assert from "node:assert/strict";
import { runDir, spawnCli } from "../support/cli.ts";
import {
  alive,
  FPM_PROCESS,
  fpmMaster,
  HEARTBEAT,
  heartbeat,
  sh,
  Stack,
  waitFor,
} from "./stack.ts";

/** The probe interval (the positional timeout) of the run under test. */
const INTERVAL_S = 10;

/** The live processes whose command line `matches`, with their parents. */
async function processes(matches: (args: string) => boolean) {
  const r = await sh("ps", ["-eo", "pid=,ppid=,args="]);
  return r.out.split("\n").map((line) => {
    const [, pid, ppid, args] = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line) ?? [];
    return { pid: Number(pid), ppid: Number(ppid), args: args ?? "" };
  }).filter((p) => p.pid > 0 && alive(p.pid) && matches(p.args));
}

Deno.test({
  name:
    "e2e: a cron run wakes on the master's exit: a SIGKILLed pool is back well before the next probe, and no watcher outlives the run",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const stack = await Stack.up();
    const work = await runDir("exits-");
    const dir = work.path;
    let run: Deno.ChildProcess | null = null;
    try {
      await stack.healthy();
      const before = await fpmMaster();
      assert.notEqual(before, null, "php-fpm runs");
      // probes at 0, 10 and 20 s of a 30 s run
      run = spawnCli([
        HEARTBEAT,
        String(INTERVAL_S),
        "",
        "--run-for",
        "30",
        "--log-file",
        `${dir}/log`,
        "--state-dir",
        `${dir}/state`,
        "--lock-file",
        `${dir}/lock`,
      ], "piped");
      const runPid = run.pid;
      // the watcher on the master the first probe found: pidwait on a note in our state folder,
      // else tail on the master's pid
      const watches = (pid: number | null) => (args: string) =>
        (/pidwait -F /.test(args) && args.includes(dir)) ||
        (pid !== null && /\/tail --pid=/.test(args) && args.includes(`--pid=${pid} `));
      let watcher: { pid: number; args: string }[] = [];
      const armed = await waitFor(async () => {
        watcher = (await processes(watches(before))).filter((p) => p.ppid === runPid);
        return watcher.length === 1;
      }, 30_000);
      assert.notEqual(armed, null, "the run watches the master after its first probe");
      // mid-interval: the next probe is due about INTERVAL_S after the first
      await new Promise((r) => setTimeout(r, 1000));
      const pool = await sh("pgrep", ["-g", String(before), "-x", FPM_PROCESS]);
      for (const pid of pool.out.split("\n").map(Number).filter((n) => n > 0)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      const back = await waitFor(async () => (await heartbeat(1000)) === "200", 20_000);
      assert.notEqual(back, null, "the heartbeat answers again");
      // generous, the machine is noisy: the next probe was due about 9 s after the kill
      assert.ok(back! <= 5000, `200 again ${back} ms after the kill (bound 5000)`);

      const status = await run.status;
      const stderr = new TextDecoder().decode(await new Response(run.stderr).arrayBuffer());
      run = null;
      assert.equal(status.code, 0, stderr);
      const log = await Deno.readTextFile(`${dir}/log`).catch(() => "");
      assert.match(log, /502 PHP restarted\./);
      const after = await fpmMaster();
      assert.ok(after !== null && after !== before, `new master ${after}, old ${before}`);
      const left = await processes((args) =>
        watches(before)(args) || watches(after)(args) || args.includes(dir)
      );
      assert.deepEqual(left, [], "no watcher outlives the run");
    } finally {
      if (run !== null) {
        try {
          run.kill("SIGKILL");
        } catch { /* exited */ }
        await run.status;
        await run.stderr.cancel().catch(() => {});
      }
      await stack.healthy().catch(() => {});
      await stack.down();
      await work.remove();
    }
  },
});
