/**
 * A target's watch of its children's deaths, step by step with fakes: php-fpm's error log grows
 * between steps; past warn_child_crashes one alert and one incident name the signal, the pool and
 * the pages nginx lost; nothing is restarted; the metric counts; quiet for 5 minutes, it resolves.
 */
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli.ts";
import { loadConfig } from "../../src/config/load.ts";
import { memoryOutbox } from "../../src/alert/outbox.ts";
import { memoryIncidentLog } from "../../src/record/incidents.ts";
import { renderMetrics } from "../../src/record/metrics.ts";
import { memoryPauses } from "../../src/run/pause_file.ts";
import { fileStateStore, freshMemory, memoryStateStore } from "../../src/run/state.ts";
import { TargetWatch } from "../../src/run/target.ts";
import { FpmHost } from "../support/fpm_host.ts";
import {
  actions,
  captureLogs,
  debianFs,
  FakeClock,
  fakeMailer,
  memoryLocks,
  scriptedHttp,
  testDeps,
  until,
} from "../support/fakes.ts";

const URI = "http://127.0.0.1:8889/php-heartbeat.php";
const FPM_LOG = "/var/log/php8.2-fpm.log";
const NGINX_LOG = "/var/log/nginx/error.log";

/** php-fpm's time format, in the host's zone: `03-Dec-2026 10:00:01`. */
function fpmTime(ms: number): string {
  const d = new Date(ms);
  const m = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getDate())}-${m[d.getMonth()]}-${d.getFullYear()} ${p(d.getHours())}:${
    p(d.getMinutes())
  }:${p(d.getSeconds())}`;
}

function nginxTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}/${p(d.getMonth() + 1)}/${p(d.getDate())} ${p(d.getHours())}:${
    p(d.getMinutes())
  }:${p(d.getSeconds())}`;
}

async function setup(
  opts: { config?: string; journal?: (args: string[]) => string } = {},
) {
  const clock = new FakeClock();
  const host = new FpmHost();
  host.up("php8.2-fpm");
  const journal = opts.journal;
  const runner = host.runner((call) =>
    call.cmd === "/usr/bin/journalctl" && journal ? { stdout: journal(call.args) } : undefined
  );
  const files: Record<string, string> = {
    "/etc/php/8.2/fpm/php-fpm.conf": opts.config ??
      `[global]\nerror_log = ${FPM_LOG}\n[www]\nuser = www-data\nlisten = /run/php/php8.2-fpm.sock\n`,
    [FPM_LOG]: "[03-Dec-2026 09:00:00] NOTICE: ready to handle connections\n",
    [NGINX_LOG]: "",
    "/etc/passwd": "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
    "/run/php/php8.2-fpm.pid": "1000\n",
  };
  const fs = debianFs({ files, executables: journal ? ["/usr/bin/journalctl"] : [] });
  const mailer = fakeMailer();
  const deps = testDeps({
    clock,
    httpGet: scriptedHttp(clock, [{ status: 200, body: "ok", ms: 3 }]),
    runner,
    mailer,
    fs: {
      ...fs,
      // nginx's log is www-data's on Debian
      readUntrusted: (path, read) =>
        path === NGINX_LOG && read.owners !== undefined && !read.owners.includes(33)
          ? Promise.reject(new Error("it is owned by uid 33"))
          : fs.readUntrusted(path, read),
    },
  });
  const { mode, raw } = parseCommandLine([URI, "5", "ops@example.com"]);
  const cfg = await loadConfig(mode as "minute", raw, deps);
  const incidents = memoryIncidentLog();
  const options = {
    store: memoryStateStore(),
    incidents,
    outbox: memoryOutbox(),
    lock: memoryLocks(),
    pauses: memoryPauses(),
  };
  const target = cfg.targets[0]!;
  const watch = new TargetWatch(cfg, target, deps, options, freshMemory());
  const crash = (pid: number, signal = "11 (SIGSEGV - core dumped)") => {
    files[FPM_LOG] += `[${
      fpmTime(clock.now())
    }] WARNING: [pool www] child ${pid} exited on signal ${signal} after 0.02 seconds from start\n`;
    files[NGINX_LOG] += `${
      nginxTime(clock.now())
    } [error] 812#812: *${pid} upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, server: , request: "GET /cart.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "127.0.0.1:8889"\n`;
  };
  const step = async () => {
    await watch.step(target.policy);
    clock.advance(1000);
  };
  return { clock, files, watch, step, crash, mailer, incidents, runner, target, cfg };
}

Deno.test("child crashes: the 5th SIGSEGV within 60 s sends one alert naming signal, pool and page; no restart", async () => {
  const s = await setup();
  const logs = captureLogs();
  await s.step();
  for (let i = 0; i < 4; i++) {
    s.crash(2000 + i);
    await s.step();
  }
  assert.equal(s.mailer.sent.length, 0, "4 crashes are not past 5");
  s.crash(2004);
  await s.step();
  assert.ok(await until(() => s.mailer.sent.length === 1), "one alert");
  const mail = s.mailer.sent[0]!;
  assert.match(mail.subject, /^web1 PHP children crashing \[php8\.2-fpm #\d{8}-\d{6}-\d{3}\]$/);
  assert.match(
    mail.text,
    /PHP pool www: 5 children crashed within 4 s \(signal 11 \(SIGSEGV\) 5\); php-fpm was not restarted/,
  );
  assert.match(
    mail.text,
    /Requests nginx lost at those seconds, as \/var\/log\/nginx\/error\.log says/,
  );
  assert.match(mail.text, /\n +5 +GET \/cart\.php\n/);
  assert.match(mail.text, /Incident: \d{8}-\d{6}-\d{3} \(php8\.2-fpm, child_crashes, firing\)/);
  // more crashes of the same loop: no more mail
  for (let i = 0; i < 20; i++) {
    s.crash(3000 + i);
    await s.step();
  }
  await until(() => false, 200);
  assert.equal(s.mailer.sent.length, 1, "alerted once");
  assert.deepEqual(actions(s.runner), [], "nothing restarted, killed or reloaded");
  assert.equal(s.watch.memory.state.restarts.length, 0);
  const [record] = s.incidents.records;
  assert.equal(s.incidents.records.length, 1);
  assert.equal(record!.kind, "child_crashes");
  assert.equal(record!.poolName, "www");
  assert.equal(record!.restart, null);
  assert.deepEqual(record!.childCrashes!.lost, [{ request: "GET /cart.php", count: 5 }]);
  assert.deepEqual(s.watch.memory.counters.childDeaths, { www: { SIGSEGV: 25 } });
  const text = await renderMetrics([{ name: "php8.2-fpm", counters: s.watch.memory.counters }]);
  assert.match(
    text,
    /^php_relaunch_child_deaths_total\{target="php8\.2-fpm",pool="www",signal="SIGSEGV"\} 25$/m,
  );
  assert.match(logs.lines().join("\n"), /PHP pool www: 5 children crashed/);
});

Deno.test("child crashes: 5 quiet minutes resolve the incident, with one more alert and record", async () => {
  const s = await setup();
  await s.step();
  for (let i = 0; i < 6; i++) {
    s.crash(2000 + i);
    await s.step();
  }
  assert.ok(await until(() => s.mailer.sent.length === 1));
  for (let i = 0; i < 298; i++) await s.step();
  await until(() => false, 100);
  assert.equal(s.mailer.sent.length, 1, "still crashing, for all we know");
  for (let i = 0; i < 3; i++) await s.step();
  assert.ok(await until(() => s.mailer.sent.length === 2), "resolved");
  const over = s.mailer.sent[1]!;
  assert.match(over.subject, /^web1 PHP children crashes over \[php8\.2-fpm #/);
  assert.match(over.text, /PHP pool www: no child crashed for 5 min; 6 crashes from /);
  assert.match(over.text, /child_crashes, resolved\)/);
  assert.equal(
    s.mailer.sent[0]!.subject.slice(-22),
    over.subject.slice(-22),
    "the same incident, threaded",
  );
  assert.deepEqual(s.incidents.records.map((r) => r.childCrashes?.status), ["firing", "resolved"]);
});

Deno.test("child crashes: deaths by SIGKILL/SIGTERM are counted, never alerted", async () => {
  const s = await setup();
  await s.step();
  for (let i = 0; i < 8; i++) {
    s.crash(2000 + i, i % 2 ? "9 (SIGKILL)" : "15 (SIGTERM)");
    await s.step();
  }
  await until(() => false, 100);
  assert.equal(s.mailer.sent.length, 0);
  assert.deepEqual(s.watch.memory.counters.childDeaths, { www: { SIGKILL: 4, SIGTERM: 4 } });
});

Deno.test("child crashes: the log's history is not news; nginx's log without those seconds is said", async () => {
  const s = await setup();
  // crashes before the watch began
  for (let i = 0; i < 10; i++) s.crash(1000 + i);
  s.files[NGINX_LOG] = "";
  await s.step();
  assert.equal(s.watch.memory.counters.childDeaths, undefined);
  for (let i = 0; i < 5; i++) {
    s.crash(2000 + i);
    s.files[NGINX_LOG] = "";
    await s.step();
  }
  assert.ok(await until(() => s.mailer.sent.length === 1));
  assert.match(
    s.mailer.sent[0]!.text,
    /Requests nginx lost: none in \/var\/log\/nginx\/error\.log at those seconds/,
  );
});

Deno.test("child crashes: php-fpm logging to syslog is followed in the journal", async () => {
  let n = 0;
  const s = await setup({
    config: "[global]\nerror_log = syslog\n[www]\nlisten = 9000\n",
    journal: () => {
      // nothing new at the first look
      if (n++ === 0) return "";
      return `${
        Math.floor(Date.now() / 1000)
      }.000000 web1 php-fpm[1000]: [WARNING] [pool www] child ${n} exited on signal 6 (SIGABRT) after 0.1 seconds from start\n-- cursor: s=${n}\n`;
    },
  });
  await s.step();
  for (let i = 0; i < 6; i++) await s.step();
  assert.ok(await until(() => s.mailer.sent.length === 1));
  assert.match(s.mailer.sent[0]!.text, /5 children crashed .*signal 6 \(SIGABRT\) 5/);
  const calls = s.runner.lines().filter((l) => l.includes("journalctl"));
  assert.match(calls[0]!, /--since=@\d+ _COMM=php-fpm8\.2$/);
  assert.match(calls[1]!, /--since=@\d+ _COMM=php-fpm8\.2$/, "no cursor yet: from then");
  assert.match(calls[2]!, /--after-cursor=s=2 _COMM=php-fpm8\.2$/, "from where it stopped");
});

Deno.test("child crashes: while paused they are counted, not alerted, and not held against the pool after", async () => {
  const s = await setup();
  await s.step();
  const until_ = s.clock.now() + 60_000;
  await s.watch.ctx.options.pauses!.write("php8.2-fpm", {
    at: s.clock.now(),
    until: until_,
    by: "deploy",
    reason: "deploy 1234",
  });
  for (let i = 0; i < 8; i++) {
    s.crash(2000 + i);
    await s.step();
  }
  await until(() => false, 100);
  assert.equal(s.mailer.sent.length, 0, "held by the pause");
  assert.deepEqual(s.watch.memory.counters.childDeaths, { www: { SIGSEGV: 8 } });
  s.clock.advance(60_000);
  await s.step();
  s.crash(3000);
  await s.step();
  await until(() => false, 100);
  assert.ok(
    !s.mailer.sent.some((m) => /children crashing/.test(m.subject)),
    "the crashes read during the pause do not count toward the threshold after it",
  );
});

Deno.test("child crashes: cron runs go on where the last one stopped, through the state file's memory", async () => {
  const s = await setup();
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-crash-cron-" });
  // written and read back as JSON, as cron runs share it
  const store = fileStateStore(`${dir}/php8.2-fpm.json`);
  const run = async (crashes: number[]) => {
    // each cron run is a new watch with the memory the last one saved
    const watch = new TargetWatch(
      s.cfg,
      s.target,
      s.watch.ctx.deps,
      s.watch.ctx.options,
      await store.load(),
    );
    for (const pid of [0, ...crashes]) {
      if (pid > 0) s.crash(pid);
      await watch.step(s.target.policy);
      s.clock.advance(1000);
    }
    await store.save(watch.memory);
    return watch;
  };
  await run([2001, 2002, 2003]);
  const second = await run([2004]);
  await until(() => false, 100);
  assert.equal(s.mailer.sent.length, 0, "4 crashes, none read twice");
  assert.deepEqual(second.memory.counters.childDeaths, { www: { SIGSEGV: 4 } });
  await run([2005]);
  assert.ok(await until(() => s.mailer.sent.length === 1), "the 5th, one run later");
  await run([2006, 2007]);
  await until(() => false, 100);
  assert.equal(s.mailer.sent.length, 1, "the incident is remembered too");
  await Deno.remove(dir, { recursive: true });
});
