/**
 * OPcache's watch in the cron run, with fakes: its status script asked once a minute on the
 * pool's FastCGI address, each warning sent once, the gauges, and a worker's answer that never
 * decides anything but a warning.
 */
import assert from "node:assert/strict";
import { OPCACHE_SCRIPT } from "../../src/fpm/opcache.ts";
import { families, renderMetrics } from "../../src/record/metrics.ts";
import type { Memory } from "../../src/run/state.ts";
import type { FcgiTarget } from "../../src/shared/deps.ts";
import { cronRun } from "../support/cron_run.ts";
import {
  captureLogs,
  debianFs,
  FakeClock,
  fakeMailer,
  type FcgiStep,
  scriptedFcgi,
  scriptedHttp,
  testDeps,
} from "../support/fakes.ts";
import { FpmHost, masterTitle } from "../support/fpm_host.ts";
import { opcacheJson, SCRIPT_INSTALLED } from "../support/opcache.ts";

const CONFIG = `
[defaults]
interval = 5
timeout = 5
mail_to = ["ops@example.com"]

[[target]]
name = "www"
url = "fcgi+unix:///run/php/php8.2-fpm.sock/ping"
service = "php8.2-fpm"
`;

const FPM_CONF = "/etc/php/8.2/fpm/php-fpm.conf";
const PONG: FcgiStep = { status: 200, body: "pong", ms: 3 };

/** Runs the cron form for `runFor` s; `opcache(n)` answers the n-th ask of the status script. */
async function run(opts: {
  opcache: (n: number) => FcgiStep;
  runFor?: number;
  config?: string;
  installed?: boolean;
  memory?: Memory;
  files?: Record<string, string>;
}) {
  const logs = captureLogs();
  const clock = new FakeClock();
  const asked: FcgiTarget[] = [];
  const fcgi = scriptedFcgi(clock, (target: FcgiTarget) => {
    if (target.path !== OPCACHE_SCRIPT) return PONG;
    asked.push(target);
    return opts.opcache(asked.length - 1);
  });
  const host = new FpmHost(undefined, clock);
  host.add({ pid: 100, name: "php-fpm8.2", title: masterTitle(FPM_CONF) });
  host.addWorker(100, "www", { pid: 200 });
  const runner = host.runner(() => undefined);
  const mailer = fakeMailer();
  const installed = opts.installed ?? true;
  const deps = testDeps({
    clock,
    fcgiGet: fcgi,
    httpGet: scriptedHttp(clock, [{ status: 200, body: "ok", ms: 3 }]),
    runner,
    mailer,
    fs: debianFs({
      files: {
        "/etc/php-relaunch/config.toml": opts.config ?? CONFIG,
        "/run/php/php8.2-fpm.pid": "100\n",
        ...(installed ? SCRIPT_INSTALLED.files : {}),
        ...opts.files,
      },
      ...(installed ? { modes: SCRIPT_INSTALLED.modes, dirs: SCRIPT_INSTALLED.dirs } : {}),
    }),
  });
  const r = await cronRun(deps, opts.runFor ?? 180, { memory: opts.memory });
  return { ...r, asked, mailer, runner, logs };
}

const warnings = (mailer: ReturnType<typeof fakeMailer>) =>
  mailer.sent.filter((m) => /OPcache warning/.test(m.subject));

Deno.test("OPcache full: one warning naming opcache.memory_consumption, asked once a minute, nothing restarted", async () => {
  const r = await run({
    opcache: () => ({
      status: 200,
      body: opcacheJson({ full: true, usedMb: 127.6, freeMb: 0.4, memoryConsumption: "128" }),
    }),
  });
  assert.equal(r.code, 0);
  // 3 minutes of probes every 5 s: the script at 0, 60 and 120 s, on the pool's own socket
  assert.equal(r.asked.length, 3);
  assert.deepEqual(r.asked[0]!.address, { transport: "unix", path: "/run/php/php8.2-fpm.sock" });
  const sent = warnings(r.mailer);
  assert.deepEqual(sent.map((m) => m.subject), ["web1 PHP OPcache warning"], "warned once");
  assert.match(
    sent[0]!.text,
    /PHP OPcache warning: OPcache is full \(127\.6 MB used, 0\.4 MB free, 0\.0 MB wasted of 128\.0 MB, 500 scripts\): scripts it has no room for are compiled on every request; raise opcache\.memory_consumption\./,
  );
  assert.match(
    sent[0]!.text,
    /Setting to raise: opcache\.memory_consumption: raise .*from 128 to 256/,
  );
  assert.match(sent[0]!.text, /Nothing was restarted/);
  assert.deepEqual(r.runner.lines().filter((l) => /\/(kill|service) /.test(l)), []);
  assert.equal(r.incidents.records.length, 0, "a warning, not an incident");
});

Deno.test("OPcache gauges: used, free and wasted memory, the hit rate, OOM restarts", async () => {
  const r = await run({
    runFor: 10,
    opcache: () => ({
      status: 200,
      body: opcacheJson({
        usedMb: 60,
        freeMb: 60,
        wastedMb: 8,
        wastedPercent: 6.25,
        hits: 900,
        misses: 100,
        oomRestarts: 3,
      }),
    }),
  });
  const text = await renderMetrics([{ name: "www", counters: r.memory.counters }]);
  const MB = 2 ** 20;
  assert.match(
    text,
    new RegExp(`php_relaunch_opcache_memory_bytes\\{target="www",state="used"\\} ${60 * MB}\\n`),
  );
  assert.match(
    text,
    new RegExp(`php_relaunch_opcache_memory_bytes\\{target="www",state="free"\\} ${60 * MB}\\n`),
  );
  assert.match(
    text,
    new RegExp(`php_relaunch_opcache_memory_bytes\\{target="www",state="wasted"\\} ${8 * MB}\\n`),
  );
  assert.match(text, /php_relaunch_opcache_hit_ratio\{target="www"\} 0\.9\n/);
  assert.match(text, /# TYPE php_relaunch_opcache_oom_restarts_total counter\n/);
  assert.match(text, /php_relaunch_opcache_oom_restarts_total\{target="www"\} 3\n/);
  assert.match(text, /php_relaunch_opcache_cache_full\{target="www"\} 0\n/);
  // wasted above opcache.max_wasted_percentage (5): warned, naming the setting
  assert.match(
    warnings(r.mailer)[0]!.text,
    /wasted memory is 6\.3% .*raise opcache\.memory_consumption/,
  );
  // nothing read: no OPcache figures at all
  const none = families([{ name: "www", counters: { ...r.memory.counters, opcache: undefined } }]);
  assert.ok(none.filter((f) => f.name.includes("opcache")).every((f) => f.values.length === 0));
});

Deno.test("OPcache: without the script installed, nothing is asked and nothing logged", async () => {
  const r = await run({ installed: false, opcache: () => ({ status: 200, body: opcacheJson() }) });
  assert.equal(r.asked.length, 0);
  assert.deepEqual(r.logs.lines(), []);
  assert.match(
    r.memory.counters.opcache?.problem ?? "",
    /is missing: install it with sh scripts\/samples\.sh install/,
  );
});

Deno.test("OPcache: opcache_interval = 0 asks nothing", async () => {
  const r = await run({
    config: CONFIG.replace("timeout = 5", "timeout = 5\nopcache_interval = 0"),
    opcache: () => ({ status: 200, body: opcacheJson({ full: true }) }),
  });
  assert.equal(r.asked.length, 0);
  assert.equal(warnings(r.mailer).length, 0);
});

Deno.test("OPcache: oversized and malformed answers warn of nothing, are logged once, restart nothing", async () => {
  const huge = opcacheJson({ full: true }).replace("{", `{"pad":"${"x".repeat(70_000)}",`);
  const r = await run({
    opcache: (n) => ({ status: 200, body: n === 0 ? huge : "<b>Fatal error</b>" }),
  });
  assert.equal(r.code, 0);
  assert.equal(r.asked.length, 3);
  assert.equal(warnings(r.mailer).length, 0);
  assert.deepEqual(r.logs.lines(), [
    `OPcache not read: an answer of ${huge.length} bytes, more than the status script prints (at most 65536).`,
    "OPcache not read: not JSON: not php-relaunch's OPcache status script.",
  ], "each problem once, when it begins");
  assert.deepEqual(r.runner.lines().filter((l) => /\/(kill|service) /.test(l)), []);
});

Deno.test("OPcache: a restart pending for 5 min warns once, carried across cron runs", async () => {
  const pending = () => ({ status: 200, body: opcacheJson({ pending: true }) });
  const first = await run({ runFor: 60, opcache: pending });
  assert.equal(warnings(first.mailer).length, 0, "pending for a moment is normal");
  const since = first.memory.counters.opcache?.pendingSince;
  assert.ok(typeof since === "number");
  // the next runs, 6 minutes later: the state file says since when
  const later = structuredClone(first.memory);
  later.counters.opcache = {
    ...later.counters.opcache!,
    at: since - 6 * 60_000,
    pendingSince: since - 6 * 60_000,
  };
  const second = await run({ runFor: 60, opcache: pending, memory: later });
  const sent = warnings(second.mailer);
  assert.equal(sent.length, 1);
  assert.match(sent[0]!.text, /OPcache has waited 6 min for a restart that has not come/);
  assert.match(sent[0]!.text, /reload php-fpm to restart OPcache now/);
});

Deno.test("OPcache: a falling hit rate warns once; the interned-strings buffer full names its setting", async () => {
  const r = await run({
    runFor: 180,
    opcache: (n) => ({
      status: 200,
      // 99% at first; then 500 lookups a minute at 80%
      body: opcacheJson({ hits: 99_000 + n * 400, misses: 1000 + n * 100, internedFreeKb: 40 }),
    }),
  });
  const sent = warnings(r.mailer);
  assert.deepEqual(
    sent.map((m) => /PHP OPcache warning: [^\n]*/.exec(m.text)?.[0].slice(0, 60)),
    [
      "PHP OPcache warning: OPcache's interned-strings buffer is fu",
      "PHP OPcache warning: OPcache's hit rate fell to 80.0% since ",
    ],
  );
  assert.match(sent[0]!.text, /raise opcache\.interned_strings_buffer\./);
});

Deno.test("OPcache behind an HTTP heartbeat: asked on the pool's listen from php-fpm.conf", async () => {
  const r = await run({
    runFor: 10,
    config: CONFIG.replace(
      'url = "fcgi+unix:///run/php/php8.2-fpm.sock/ping"',
      'url = "http://127.0.0.1:8889/php-heartbeat.php"',
    ),
    files: {
      [FPM_CONF]: "[global]\npid = /run/php/php8.2-fpm.pid\n[www]\nlisten = 127.0.0.1:9000\n",
    },
    opcache: () => ({ status: 200, body: opcacheJson() }),
  });
  assert.equal(r.asked.length, 1);
  assert.deepEqual(r.asked[0]!.address, { transport: "tcp", hostname: "127.0.0.1", port: 9000 });
  assert.equal(r.memory.counters.opcache?.problem, null);
  assert.ok(r.memory.counters.opcache?.status !== null);
});

Deno.test("OPcache turned off: its old figures are dropped, and said once", async () => {
  const off = JSON.parse(opcacheJson());
  off.status = false;
  off.ini["opcache.enable"] = "0";
  const r = await run({
    opcache: (n) => ({ status: 200, body: n === 0 ? opcacheJson() : JSON.stringify(off) }),
  });
  assert.equal(r.asked.length, 3);
  assert.equal(r.memory.counters.opcache?.status, null, "no gauges of an OPcache that is off");
  assert.equal(r.memory.counters.opcache?.problem, "OPcache is off: opcache.enable is off");
  assert.deepEqual(r.logs.lines(), ["OPcache not read: OPcache is off: opcache.enable is off."]);
  const text = await renderMetrics([{ name: "www", counters: r.memory.counters }]);
  assert.doesNotMatch(text, /php_relaunch_opcache_memory_bytes\{/);
});
