import assert from "node:assert/strict";
import type { IncidentRecord } from "../../src/record/incidents.ts";
import { buildReport, renderReport } from "../../src/record/incident_report.ts";
import { statusOf } from "../support/pool.ts";

const MB = 2 ** 20;
const HOUR = 3_600_000;
/** 2026-11-20 03:00 local time: incidents pile up at night, when wp-cron runs. */
const NIGHT = new Date(2026, 10, 20, 3, 0, 0).getTime();

/** An incident with `workers` busy on `script` for `seconds`, in a pool of 5 (pm.max_children). */
function incident(at: number, opts: {
  script?: string;
  seconds?: number;
  busy?: number;
  status?: boolean;
  label?: string;
  rung?: string;
  ok?: boolean;
  steps?: string[];
  errorLog?: string[];
  dState?: boolean;
  slowlogOff?: boolean;
} = {}): IncidentRecord {
  const busy = opts.busy ?? 5;
  const status = statusOf({ busy, idleWorkers: 5 - busy, seconds: opts.seconds ?? 320 });
  for (const w of status.workers) {
    if (w.state !== "Idle") w.script = opts.script ?? "/var/www/wp-cron.php";
  }
  return {
    version: 1,
    at,
    host: "web1",
    target: "www",
    label: opts.label ?? "timeout",
    pool: opts.status === false ? null : "hung",
    why: "",
    evidence: {
      at,
      status: opts.status === false ? null : status,
      statusError: opts.status === false ? "not read" : null,
      processes: [
        {
          pid: 100,
          ppid: 1,
          pgid: 100,
          state: "S",
          cpuSeconds: 1,
          rssKb: 20 * 1024,
          ageSeconds: 9,
        },
        ...Array.from({ length: 5 }, (_, i) => ({
          pid: 200 + i,
          ppid: 100,
          pgid: 100,
          state: opts.dState && i === 0 ? "D" : "S",
          cpuSeconds: 3,
          rssKb: 48 * 1024,
          ageSeconds: 500,
        })),
      ],
      configFile: "/etc/php/8.2/fpm/php-fpm.conf",
      settings: {
        pool: "www",
        pm: "static",
        maxChildren: 5,
        requestTerminateTimeout: null,
        requestSlowlogTimeout: opts.slowlogOff ? null : "5s",
        listen: "/run/php/php8.2-fpm.sock",
        statusPath: "/status",
        statusListen: "127.0.0.1:9001",
        pingPath: "/ping",
        slowlog: "/var/log/www.slow.log",
      },
      errorLogFile: "/var/log/php8.2-fpm.log",
      slowlog: [
        "[20-Nov-2026 03:00:01]  [pool www] pid 200",
        `script_filename = ${opts.script ?? "/var/www/wp-cron.php"}`,
      ],
      errorLog: opts.errorLog ?? [],
      memory: { total: 8192 * MB, available: 2048 * MB },
    },
    restart: { ok: opts.ok ?? true, rung: opts.rung ?? "kill_stuck", steps: opts.steps ?? [] },
  };
}

/** Ten nights: nine with every worker stuck in wp-cron, one 502 with idle workers and no status. */
const TEN = [
  ...Array.from({ length: 9 }, (_, i) => incident(NIGHT + i * 24 * HOUR + i * 60_000)),
  incident(NIGHT + 2 * HOUR, { label: "502", busy: 1, status: false, rung: "kill" }),
];

Deno.test("report: incidents by pool, where the record names it", () => {
  const named = TEN.map((i, n) => n < 3 ? { ...i, poolName: "shop" } : i);
  const r = buildReport(named, NIGHT - HOUR, NIGHT + 10 * 24 * HOUR);
  assert.deepEqual(r.byPool, { "www/shop": 3 });
  assert.match(renderReport(r), /\nBy pool:\n {5}3 {2}www\/shop\n/);
  assert.doesNotMatch(renderReport(buildReport(TEN, NIGHT - HOUR, NIGHT + HOUR)), /By pool/);
});

Deno.test("report: the workers' memory at the incidents, by pool (each worker's title first)", () => {
  const shop = incident(NIGHT, {});
  shop.evidence.processes = shop.evidence.processes.map((p, n) =>
    p.ppid === 1 ? p : { ...p, pool: n === 1 ? "shop" : "www", rssKb: (n === 1 ? 300 : 40) * 1024 }
  );
  const r = buildReport(
    [shop, { ...incident(NIGHT + HOUR), poolName: "www" }],
    0,
    NIGHT + 2 * HOUR,
  );
  assert.deepEqual(r.memoryByPool, {
    "www/shop": { largestKb: 300 * 1024, averageKb: 300 * 1024, workers: 1 },
    "www/www": {
      largestKb: 48 * 1024,
      averageKb: Math.round((4 * 40 + 5 * 48) * 1024 / 9),
      workers: 9,
    },
  });
  assert.match(
    renderReport(r),
    /\nWorkers' resident memory at the incidents \(ps\):\n {2}www\/shop: largest 300 MB, average 300 MB \(1 workers\)\n {2}www\/www: largest 48 MB, average 44 MB \(9 workers\)\n/,
  );
  // a record with neither titles nor a pool's name: the target alone
  assert.deepEqual(Object.keys(buildReport(TEN.slice(0, 1), 0, NIGHT + HOUR).memoryByPool), [
    "www/-",
  ]);
});

Deno.test("report: counts by cause, by rung and by hour of day", () => {
  const r = buildReport(TEN, NIGHT - HOUR, NIGHT + 10 * 24 * HOUR);
  assert.equal(r.incidents, 10);
  assert.deepEqual(r.byCause, { "timeout, pool hung": 9, "502": 1 });
  assert.deepEqual(r.byRung, { kill_stuck: 9, kill: 1 });
  assert.equal(r.byHour[3], 9);
  assert.equal(r.byHour[5], 1);
  assert.equal(r.byHour.reduce((a, b) => a + b, 0), 10);
});

Deno.test("report: why php-fpm could not start, by its configuration test's first error", () => {
  const broken = (at: number) => ({
    ...incident(at, { label: "502", ok: false }),
    cannotStart: ["[/etc/php/8.2/fpm/pool.d/www.conf:2] unknown entry 'foo'", "Unable to include"],
  });
  const r = buildReport(
    [broken(NIGHT), broken(NIGHT + HOUR), ...TEN],
    NIGHT - HOUR,
    NIGHT + 10 * 24 * HOUR,
  );
  assert.deepEqual(r.cannotStart, {
    "[/etc/php/8.2/fpm/pool.d/www.conf:2] unknown entry 'foo'": 2,
  });
  assert.match(
    renderReport(r),
    /\nWhy php-fpm could not start \(its configuration test\):\n {5}2 {2}\[\/etc\/php\/8\.2\/fpm\/pool\.d\/www\.conf:2\] unknown entry 'foo'\n/,
  );
  assert.doesNotMatch(
    renderReport(buildReport(TEN, NIGHT - HOUR, NIGHT + 10 * 24 * HOUR)),
    /could not start/,
  );
});

Deno.test("report: deaths by the OOM killer are counted, with a memory hint", () => {
  const killed = {
    ...incident(NIGHT, { label: "502" }),
    oomKills: [{ pid: 48214, rssKb: 2_000_000, at: NIGHT }],
  };
  const r = buildReport([killed, ...TEN], NIGHT - HOUR, NIGHT + 10 * 24 * HOUR);
  assert.equal(r.oomDeaths, 1);
  const text = renderReport(r);
  assert.match(text, /\nKilled by the kernel's OOM killer: 1 incidents\n/);
  assert.match(
    text,
    /- memory: the kernel's OOM killer ended php-fpm processes in 1 of 11 incidents \(the largest 1953 MB resident\)/,
  );
});

Deno.test("hint: pm.max_children x the largest worker beyond the host's memory", () => {
  const tight = incident(NIGHT);
  tight.evidence.memory = { total: 200 * 1024 * 1024, available: 50 * 1024 * 1024 };
  const hints = buildReport([tight], NIGHT - HOUR, NIGHT + HOUR).hints;
  const hint = hints.find((h) => /the largest seen/.test(h.advice));
  assert.equal(hint?.setting, "pm.max_children");
  assert.equal(
    hint?.advice,
    "5 workers x the largest seen (48 MB) is 240 MB, more than the host's 200 MB: at most 3 fit with room for the rest, or lower PHP's memory_limit",
  );
  assert.ok(
    !buildReport(TEN, NIGHT - HOUR, NIGHT + HOUR).hints.some((h) =>
      /the largest seen/.test(h.advice)
    ),
    "workers that fit: no such hint",
  );
});

Deno.test("report: the scripts in stuck workers and in the slowlog, most frequent first", () => {
  const r = buildReport(
    [...TEN, incident(NIGHT + 30 * HOUR, { script: "/var/www/report.php", seconds: 40 })],
    0,
    NIGHT + 40 * HOUR,
  );
  assert.deepEqual(r.stuckScripts[0], {
    script: "/var/www/wp-cron.php",
    incidents: 9,
    longestSeconds: 320,
  });
  assert.equal(r.stuckScripts[1]?.script, "/var/www/report.php");
  assert.equal(r.slowlogScripts[0]?.incidents, 10, "the 502's slowlog names wp-cron too");
});

Deno.test("hint: max children reached in 9 of 10, 48 MB workers, 2 GB free: raise pm.max_children, in steps", () => {
  const hint = buildReport(TEN, 0, NIGHT + 10 * 24 * HOUR).hints.find((h) =>
    h.setting === "pm.max_children"
  );
  assert.ok(hint);
  assert.match(
    hint.advice,
    /^max children reached in 9 of 10 incidents; average worker RSS 48 MB and 2048 MB available: pm\.max_children could go from 5 to 20 \(memory would allow 26; raise it in steps\), but first see why \/var\/www\/wp-cron\.php runs so long$/,
  );
});

Deno.test("hint: workers stuck > 300 s in wp-cron.php and no request_terminate_timeout", () => {
  const hint = buildReport(TEN, 0, NIGHT + 10 * 24 * HOUR).hints.find((h) =>
    h.setting === "request_terminate_timeout"
  );
  assert.ok(hint);
  assert.match(
    hint.advice,
    /workers stuck up to 320 s in \/var\/www\/wp-cron\.php \(9 of 10 incidents\): set request_terminate_timeout \(e\.g\. 160s\)/,
  );
  // short requests are not "stuck" enough for that advice
  const short = [incident(NIGHT, { seconds: 6 })];
  assert.equal(
    buildReport(short, 0, NIGHT + HOUR).hints.some((h) =>
      h.setting === "request_terminate_timeout"
    ),
    false,
  );
});

Deno.test("hints: no status page, slowlog off, crashing workers, processes stuck on I/O", () => {
  const r = buildReport(
    [
      incident(NIGHT, { status: false, slowlogOff: true }),
      incident(NIGHT + HOUR, {
        busy: 1,
        label: "502",
        errorLog: ["WARNING: [pool www] child 201 exited on signal 11 (SIGSEGV - core dumped)"],
        slowlogOff: true,
        dState: true,
      }),
    ],
    0,
    NIGHT + 2 * HOUR,
  );
  const by = Object.fromEntries(r.hints.map((h) => [h.setting, h.advice]));
  assert.match(by["pm.status_listen"] ?? "", /1 of 2 incidents have no pool status/);
  assert.match(by["request_slowlog_timeout"] ?? "", /is off: set it/);
  assert.match(by["php extensions"] ?? "", /crashed .* in 1 of 2 incidents/);
  assert.match(by["storage"] ?? "", /state D\) in 1 of 2 incidents/);
  assert.equal(by["pm.max_children"], undefined, "no incident had every worker busy");
});

Deno.test("hint: a reload that did not help before restart did names the rungs setting", () => {
  const inVain = [
    "kill_stuck: skipped (no stuck worker known)",
    "reload: SIGUSR2 to master 100 (still failing)",
    "restart: /usr/sbin/service php8.2-fpm restart exited 0",
  ];
  const r = buildReport(
    [
      incident(NIGHT, { status: false, rung: "restart", steps: inVain }),
      // reload alone worked here; the last one never got past it
      incident(NIGHT + HOUR, { status: false, rung: "reload", steps: [inVain[1]!] }),
      incident(NIGHT + 2 * HOUR, {
        status: false,
        rung: "reload",
        steps: ["reload: SIGUSR2 to master 100"],
      }),
    ],
    0,
    NIGHT + 3 * HOUR,
  );
  const by = Object.fromEntries(r.hints.map((h) => [h.setting, h.advice]));
  assert.match(by["rungs"] ?? "", /did not bring the heartbeat back in 1 of 3 incidents/);
  assert.match(by["rungs"] ?? "", /"restart" before "reload"/);
  const fine = buildReport([incident(NIGHT, { rung: "reload", steps: [] })], 0, NIGHT + HOUR);
  assert.ok(!fine.hints.some((h) => h.setting === "rungs"));
});

Deno.test("the text report lists causes, hours, scripts and hints; an empty one says so", () => {
  const text = renderReport(buildReport(TEN, NIGHT - HOUR, NIGHT + 10 * 24 * HOUR));
  assert.match(text, /10 incidents from /);
  assert.match(text, /By cause:\n {5}9 {2}timeout, pool hung\n {5}1 {2}502/);
  assert.match(text, /03:00 {4}9 {2}#{30}/);
  assert.match(text, /9 {2}\/var\/www\/wp-cron\.php \(up to 320 s\)/);
  assert.match(text, /- pm\.max_children: max children reached in 9 of 10/);
  assert.match(renderReport(buildReport([], 0, 1)), /0 incidents[^\n]*\nNothing to report\./);
});

Deno.test("the text report shows what php-fpm's world wrote, never obeyed by the terminal", () => {
  const hostile = incident(NIGHT, { script: "/var/www/\x1b]0;owned\x07x.php\x1b[2J" });
  hostile.evidence.slowlog = ["script_filename = /var/www/\x1b[31mred.php"];
  hostile.poolName = "www";
  const text = renderReport(buildReport([hostile], NIGHT - HOUR, NIGHT + HOUR));
  // deno-lint-ignore no-control-regex -- the point: no escape sequence reaches root's terminal
  assert.doesNotMatch(text, /[\x00-\x08\x0b-\x1f\x7f]/);
  assert.match(text, /\/var\/www\/\\x1b\]0;owned\\x07x\.php\\x1b\[2J \(up to 320 s\)/);
  assert.match(text, /\/var\/www\/\\x1b\[31mred\.php/);
});
