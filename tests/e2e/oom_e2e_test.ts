/**
 * Deaths by the OOM killer, for real: a php-fpm8.2 master of the test's own (service
 * php8.2-fpm-o) moved with its workers into a memory cgroup of 96 MiB, its master made the OOM
 * killer's first choice (oom_score_adj 1000, as a careless OOMScoreAdjust does), and both workers
 * asked for 512 MiB. The kernel kills the master and the workers; a cron run restarts the pool, and
 * its log line and incident name the kills from the kernel's own log (dmesg on this machine: no
 * journal, no kern.log). Skipped where a memory cgroup (v1) cannot be made. The cgroup, the
 * processes and the pool are removed at the end.
 */
import assert from "node:assert/strict";
import { directFcgiGet } from "../../src/probe/fcgi.ts";
import type { IncidentRecord } from "../../src/record/incidents.ts";
import { runCli, runDir } from "../support/cli.ts";
import { alive, ExtraPool, FPM_PROCESS, waitFor } from "./stack.ts";

const CGROUP = "/sys/fs/cgroup/memory/php-relaunch-oom-test";
const SCRIPTS = "/var/www/php-relaunch-test-oom";
const EAT = `${SCRIPTS}/eat.php`;

const pool = new ExtraPool({
  suffix: "o",
  nginxPort: null,
  poolLines: [
    "pm = static",
    "pm.max_children = 2",
    "ping.path = /ping",
    "php_admin_value[memory_limit] = -1",
  ],
});

/** Whether this machine lets the test make a memory cgroup (v1, as mounted here). */
function cgroupsWritable(): boolean {
  try {
    return Deno.statSync("/sys/fs/cgroup/memory/cgroup.procs").isFile &&
      Deno.statSync("/usr/bin/dmesg").isFile;
  } catch {
    return false;
  }
}

/** The pids in the test's cgroup. */
async function inCgroup(): Promise<number[]> {
  const text = await Deno.readTextFile(`${CGROUP}/cgroup.procs`).catch(() => "");
  return text.split("\n").map(Number).filter((n) => n > 0);
}

Deno.test({
  name: "e2e: a pool killed by the OOM killer in a memory cgroup: the restart names the kills",
  ignore: !cgroupsWritable(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const work = await runDir("oom-");
    const dir = work.path;
    try {
      await Deno.mkdir(SCRIPTS, { recursive: true, mode: 0o755 });
      await Deno.writeTextFile(
        EAT,
        "<?php $a = []; for ($i = 0; $i < 64; $i++) { $a[] = str_repeat('x', 8 << 20); } echo count($a);\n",
      );
      await Deno.chmod(EAT, 0o644);
      await pool.create();
      const master = await pool.master();
      assert.notEqual(master, null, "the pool runs");
      const processes = await pool.pids();
      assert.ok(processes.length >= 3, `master and two workers: ${processes.join(", ")}`);

      const config = `${dir}/config.toml`;
      await Deno.writeTextFile(
        config,
        `
[defaults]
timeout = 2
rungs = ["kill"]

[[target]]
name = "o"
url = "fcgi+unix://${pool.socket}/ping"
service = "${pool.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${pool.pidFile}"
fpm_config = "${pool.files.conf}"
`,
      );
      const run = [
        "--config",
        config,
        "--log-file",
        `${dir}/run.log`,
        "--state-dir",
        `${dir}/state`,
        "--lock-file",
        `${dir}/lock`,
      ];
      // the watchdog has seen the pool's master before it dies: cron runs have been running
      const before = await runCli([...run, "--run-for", "5"]);
      assert.equal(before.code, 0, before.stderr);

      await Deno.mkdir(CGROUP);
      await Deno.writeTextFile(`${CGROUP}/memory.limit_in_bytes`, String(96 << 20));
      for (const pid of processes) await Deno.writeTextFile(`${CGROUP}/cgroup.procs`, String(pid));
      await Deno.writeTextFile(`/proc/${master}/oom_score_adj`, "1000");

      // both workers eat: the kernel kills the master first, then each worker at the limit
      const eat = () =>
        directFcgiGet(
          { address: { transport: "unix", path: pool.socket }, path: EAT, query: "" },
          AbortSignal.timeout(20_000),
        ).catch((err) => err);
      await Promise.all([eat(), eat()]);
      assert.notEqual(
        await waitFor(async () => (await inCgroup()).length === 0, 20_000, 200),
        null,
        `the OOM killer ended the pool: left ${(await inCgroup()).join(", ")}`,
      );
      assert.ok(!alive(master!), "the master is gone");

      const r = await runCli([...run, "--run-for", "20"]);
      const log = await Deno.readTextFile(`${dir}/run.log`).catch(() => "");
      assert.equal(r.code, 0, `${r.stderr}\n${log}`);
      assert.match(
        log,
        new RegExp(`PHP restarted \\(${FPM_PROCESS} pid \\d+ killed by the OOM killer at \\S+, `),
        log,
      );
      assert.notEqual(await pool.master(), null, "running again");
      const incidents = (await Deno.readTextFile(`${dir}/state/incidents.jsonl`)).trim()
        .split("\n").map((l) => JSON.parse(l) as IncidentRecord);
      const kills = incidents[0]?.oomKills ?? [];
      assert.ok(
        kills.some((k) => k.pid === master),
        `the master ${master} among the kills: ${JSON.stringify(kills)}`,
      );
      assert.ok(
        kills.every((k) => processes.includes(k.pid) && k.at !== null && k.rssKb > 0),
        "only the pool's processes, each with its time and memory",
      );
    } finally {
      for (const pid of await inCgroup()) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await waitFor(async () => (await inCgroup()).length === 0, 10_000, 100);
      await Deno.remove(CGROUP).catch(() => {});
      await pool.remove();
      await Deno.remove(SCRIPTS, { recursive: true }).catch(() => {});
      await work.remove();
    }
  },
});
