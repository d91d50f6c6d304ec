/**
 * Fuzzing every input from outside: the command line, the configuration file, HTTP answers,
 * FastCGI records, state files and incident lines. Random and mutated inputs from a seeded
 * generator (a failure names its seed and case, and replays), a few thousand per target, each
 * target well under a second. Nothing may throw but the expected error, and every rejection is one
 * line.
 */
import assert from "node:assert/strict";
import { parseCommandLine } from "../src/cli.ts";
import { loadConfig } from "../src/config/load.ts";
import { parseConfigFile } from "../src/config/file.ts";
import { ConfigError } from "../src/shared/errors.ts";
import {
  AnswerReader,
  encodeRecord,
  parseCgiResponse,
  RecordType,
} from "../src/probe/fcgi_protocol.ts";
import { FcgiProtocolError } from "../src/probe/fcgi_protocol.ts";
import { parseIncident } from "../src/record/incidents.ts";
import { misconfigurationHint } from "../src/run/policy_alerts.ts";
import { decide, freshState } from "../src/run/recovery_policy.ts";
import { classifyError, probeHttp } from "../src/probe/http.ts";
import { verdictOf } from "../src/probe/result.ts";
import { buildReport, renderReport } from "../src/record/incident_report.ts";
import { cronPolicy } from "../src/config/policy_settings.ts";
import { parseState } from "../src/run/state.ts";
import { parseQueued } from "../src/alert/outbox.ts";
import { escapeControl } from "../src/shared/redact.ts";
import { debianFs, testDeps } from "./support/fakes.ts";

const SEED = 20261127;
const CASES = 2000;

/** mulberry32: small, fast, and the same sequence for the same seed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick };
}
type Rng = ReturnType<typeof random>;

/** Characters that break parsers and terminals, beside plain ones. */
const NASTY = [
  "\n",
  "\r",
  "\x00",
  "\x1b[31m",
  "\t",
  "\u2028",
  "%",
  "%ff",
  "%E0%A4%A",
  "\\",
  '"',
  "'",
  "=",
  "[",
  "]",
  "{",
  "}",
  "@",
  ":",
  "/",
  "?",
  "#",
  ",",
  " ",
  "é",
  "\uFFFD",
  "${x}",
  "..",
  "-",
  "0",
  "9",
  "65536",
  "-1",
  "1e309",
  "NaN",
  "300000y",
];

function text(rng: Rng, max = 24): string {
  let s = "";
  const n = rng.int(max);
  for (let i = 0; i < n; i++) {
    s += rng.next() < 0.3 ? rng.pick(NASTY) : String.fromCharCode(32 + rng.int(95));
  }
  return s;
}

/** `base` changed a few times: bytes inserted, dropped, replaced, a slice repeated. */
function mutate(rng: Rng, base: string): string {
  let s = base;
  for (let k = 1 + rng.int(4); k > 0; k--) {
    const at = rng.int(s.length + 1);
    switch (rng.int(4)) {
      case 0:
        s = s.slice(0, at) + rng.pick(NASTY) + s.slice(at);
        break;
      case 1:
        s = s.slice(0, at) + s.slice(at + 1 + rng.int(8));
        break;
      case 2:
        s = s.slice(0, at) + String.fromCharCode(rng.int(256)) + s.slice(at + 1);
        break;
      default:
        s = s.slice(0, at) + s.slice(at, at + rng.int(16)).repeat(2) + s.slice(at);
    }
  }
  return s;
}

// deno-lint-ignore no-control-regex -- control characters are what is looked for
const BREAKS = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;

/**
 * One line as it is printed or logged (control characters escaped, as every sink does): no line
 * break of any kind and no escape sequence, and something said.
 */
function assertOneLine(line: string, where: string) {
  assert.ok(line.length > 0, `${where}: an empty message`);
  const printed = escapeControl(line);
  assert.ok(
    !BREAKS.test(printed),
    `${where}: ${JSON.stringify(line)} is not one line`,
  );
}

/** Runs `cases` cases of `body`, naming the case of any failure; returns how long it took. */
async function fuzz(name: string, body: (rng: Rng, i: number) => Promise<void> | void) {
  const rng = random(SEED);
  const started = performance.now();
  for (let i = 0; i < CASES; i++) {
    try {
      await body(rng, i);
    } catch (err) {
      throw new Error(`${name}: case ${i} (seed ${SEED}) failed`, { cause: err });
    }
  }
  return performance.now() - started;
}

const FLAGS = [
  "--url",
  "--timeout",
  "--run-for",
  "--mail-to",
  "--service",
  "--process-name",
  "--config",
  "--interval",
  "--log-file",
  "--log-format",
  "--lock-file",
  "--state-dir",
  "--init",
  "--smtp-host",
  "--smtp-port",
  "--mail-from",
  "--status-url",
  "--mail-transport",
  "--smtp-tls",
  "--smtp-user",
  "--webhook",
  "--metrics-file",
  "--metrics-listen",
  "--expect",
  "--since",
  "--format",
  "--once",
  "--restart",
  "--restart-cgi",
  "-v",
  "--nope",
];
const VALUES = [
  "http://127.0.0.1:8889/hb",
  "fcgi://127.0.0.1:9000/ping",
  "fcgi+unix:///run/php/x.sock/ping",
  "http://u:p@h/",
  "https//x",
  "5",
  "0",
  "61",
  "ops@example.com",
  "a@b,c@d",
  "/var/log/x.log",
  "relative",
  "php8.2-fpm",
  "127.0.0.1:9",
  "7d",
  "json",
  "systemd",
  "auto",
  "sendmail",
];

const URLS = [
  "http://127.0.0.1:8889/hb",
  "https://[::1]:8443/hb?x=1",
  "fcgi://127.0.0.1:9000/ping",
  "fcgi+unix:///run/php/x.sock/ping",
];

Deno.test("fuzz: the command line: only ConfigError, each issue one line", async () => {
  const deps = testDeps();
  const ms = await fuzz("command line", async (rng) => {
    const argv: string[] = [];
    if (rng.next() < 0.4) argv.push(rng.pick(["check-config", "watch", "reset", "report"]));
    // most cases carry a URL, changed a little, where a URL goes
    if (rng.next() < 0.7) {
      argv.push(rng.pick(["--url", "--status-url", "--webhook"]), mutate(rng, rng.pick(URLS)));
    }
    for (let n = rng.int(7); n > 0; n--) {
      const r = rng.next();
      if (r < 0.45) argv.push(rng.pick(FLAGS));
      else if (r < 0.8) {
        argv.push(rng.next() < 0.5 ? rng.pick(VALUES) : mutate(rng, rng.pick(VALUES)));
      } else argv.push(text(rng));
    }
    try {
      const { mode, raw } = parseCommandLine(argv);
      if (mode !== "help" && mode !== "version") await loadConfig(mode, raw, deps);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const issue of err.issues) assertOneLine(issue, JSON.stringify(argv));
    }
  });
  assert.ok(ms < 5000, `${ms} ms`);
});

const CONFIG = `
[defaults]
interval = 1
timeout = "2s"
rungs = ["kill_stuck", "restart"]
mail_to = ["ops@example.com"]

[mail]
smtp_host = "127.0.0.1"
tls = "auto"

[webhook]
url = "https://hooks.example.com/services/T/B/X"

[metrics]
listen = "127.0.0.1:9867"

[state]
dir = "/var/lib/php-relaunch"

[[target]]
name = "main"
url = "http://127.0.0.1:8889/php-heartbeat.php"
status_url = "fcgi://127.0.0.1:9001/status"
service = "php8.2-fpm"
expect = "ok"
`;

Deno.test("fuzz: the configuration file: problems are lines, loading throws only ConfigError", async () => {
  const ms = await fuzz("config file", async (rng) => {
    const toml = rng.next() < 0.9 ? mutate(rng, CONFIG) : text(rng, 200);
    const parsed = parseConfigFile("/etc/php-relaunch/config.toml", toml);
    if (Array.isArray(parsed)) {
      for (const problem of parsed) assertOneLine(problem, JSON.stringify(toml));
      return;
    }
    const deps = testDeps({ fs: debianFs({ files: { "/etc/php-relaunch/config.toml": toml } }) });
    try {
      await loadConfig(rng.pick(["watch", "check"] as const), {}, deps);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const issue of err.issues) assertOneLine(issue, JSON.stringify(toml));
    }
  });
  assert.ok(ms < 5000, `${ms} ms`);
});

Deno.test("fuzz: HTTP answers and fetch's errors: a verdict, and a detail on one line", async () => {
  const url = new URL("http://127.0.0.1:8889/hb?token=T0K");
  const ms = await fuzz("http answers", async (rng) => {
    const body = text(rng, 80);
    const roll = rng.next();
    const result = await probeHttp(url, 1000, rng.pick(["", "ok", "\x1b"]), () => {
      if (roll < 0.3) {
        // fetch always names the URL whole; what follows it varies
        const cause = new Error(
          `error sending request for url (${url.href}): ${mutate(rng, text(rng))}`,
        );
        return Promise.reject(rng.next() < 0.5 ? new TypeError("fetch failed", { cause }) : cause);
      }
      if (roll < 0.35) return Promise.reject(text(rng));
      return Promise.resolve({
        status: rng.int(1000),
        location: rng.next() < 0.2 ? text(rng) : null,
        body,
      });
    }, Date.now);
    verdictOf(result);
    if (result.detail !== "") assertOneLine(result.detail, JSON.stringify(result));
    assert.ok(!result.detail.includes("T0K"), result.detail);
    assertOneLine(misconfigurationHint(result), JSON.stringify(result));
    classifyError(new TypeError(text(rng)));
  });
  assert.ok(ms < 5000, `${ms} ms`);
});

Deno.test("fuzz: FastCGI records: an answer, or a FcgiProtocolError, nothing else", async () => {
  const enc = new TextEncoder();
  const valid = (rng: Rng) => [
    encodeRecord(RecordType.Stderr, 1, enc.encode(text(rng))),
    encodeRecord(
      RecordType.Stdout,
      1,
      enc.encode(`Status: 200 OK\r\nContent-type: text/plain\r\n\r\n${text(rng)}`),
    ),
    encodeRecord(RecordType.Stdout, 1, new Uint8Array()),
    encodeRecord(RecordType.EndRequest, 1, new Uint8Array([0, 0, 0, 0, rng.int(5), 0, 0, 0])),
  ];
  const ms = await fuzz("fastcgi records", (rng) => {
    const bytes = Array.from(valid(rng).flatMap((r) => [...r]));
    for (let k = rng.int(6); k > 0; k--) {
      const at = rng.int(bytes.length + 1);
      if (rng.next() < 0.5) bytes[at] = rng.int(256);
      else bytes.splice(at, rng.int(4), ...Array.from({ length: rng.int(4) }, () => rng.int(256)));
    }
    const reader = new AnswerReader(1, 64 * 1024);
    try {
      // in pieces, as a socket hands them over
      let at = 0;
      while (at < bytes.length) {
        const n = 1 + rng.int(40);
        const answer = reader.push(new Uint8Array(bytes.slice(at, at + n)));
        at += n;
        if (answer !== null) {
          parseCgiResponse(answer.stdout);
          break;
        }
      }
    } catch (err) {
      if (!(err instanceof FcgiProtocolError)) throw err;
      assertOneLine(err.message, JSON.stringify(bytes));
    }
    try {
      parseCgiResponse(enc.encode(text(rng, 60)));
    } catch (err) {
      if (!(err instanceof FcgiProtocolError)) throw err;
      assertOneLine(err.message, "cgi response");
    }
  });
  assert.ok(ms < 5000, `${ms} ms`);
});

const STATE = JSON.stringify({
  version: 1,
  ...freshState(),
  failures: 1,
  failingSince: 1_700_000_000_000,
  incident: {
    kind: "php_down",
    since: 1_700_000_000_000,
    label: "502",
    restarts: 1,
    lastAlertAt: null,
  },
  restarts: [{ at: 1_700_000_000_000, ok: true, label: "502", detail: "kill" }],
  givenUpAt: null,
  warnedAt: { listen_queue: 1_700_000_000_000 },
});

Deno.test("fuzz: state files and queued alerts: the memory or a one-line reason; the policy runs on what loads", async () => {
  const policy = cronPolicy(5000);
  const ms = await fuzz("state files", (rng) => {
    const json = rng.next() < 0.9 ? mutate(rng, STATE) : text(rng, 100);
    const state = parseState(json);
    if (typeof state === "string") {
      assertOneLine(state, json);
      assert.ok(!state.includes(json.slice(0, 12)) || json.length < 12, "the bytes are not echoed");
    } else {
      const d = decide(
        state.state,
        { kind: "status", status: 502, detail: "", ms: 1 },
        1_700_000_100_000,
        policy,
      );
      JSON.stringify(d.state);
    }
    const queued = parseQueued(mutate(
      rng,
      JSON.stringify({
        delivery: {
          channel: "webhook",
          body: { text: "t", host: "h", subject: "s", line: "l", details: [] },
        },
        queuedAt: 1,
        attempts: 1,
        lastError: "x",
      }),
    ));
    if (typeof queued === "string") assertOneLine(queued, "queued");
  });
  assert.ok(ms < 5000, `${ms} ms`);
});

const INCIDENT = JSON.stringify({
  version: 1,
  at: 1_700_000_000_000,
  host: "web1",
  target: "main",
  label: "timeout",
  pool: "hung",
  why: "nothing moves",
  evidence: {
    at: 1_700_000_000_000,
    status: {
      pool: "www",
      pm: "static",
      acceptedConn: 10,
      listenQueue: 3,
      maxListenQueue: 5,
      listenQueueLen: 511,
      idle: 0,
      active: 2,
      total: 2,
      maxChildrenReached: 1,
      slowRequests: 2,
      workers: [{
        pid: 12,
        state: "Running",
        requests: 3,
        durationMs: 9000,
        method: "GET",
        uri: "/x",
        script: "/srv/x.php",
        cpu: 0,
        memory: 2097152,
      }],
    },
    statusError: null,
    processes: [{
      pid: 11,
      ppid: 1,
      pgid: 11,
      state: "S",
      cpuSeconds: 1,
      rssKb: 20000,
      ageSeconds: 100,
    }],
    configFile: "/etc/php/8.2/fpm/php-fpm.conf",
    settings: {
      pool: "www",
      pm: "static",
      maxChildren: 2,
      requestTerminateTimeout: null,
      requestSlowlogTimeout: "1s",
      listen: "/run/php/php8.2-fpm.sock",
      statusPath: "/status",
      statusListen: null,
      pingPath: "/ping",
      slowlog: null,
    },
    errorLogFile: null,
    slowlog: ["script_filename = /srv/x.php"],
    errorLog: ["WARNING: [pool www] child 12 exited on signal 11"],
    memory: { total: 4e9, available: 1e9 },
  },
  restart: { ok: true, rung: "kill_stuck", steps: ["kill_stuck: 1 worker"] },
});

Deno.test("fuzz: incident lines: a record the report can use, or a one-line reason", async () => {
  const ms = await fuzz("incident lines", (rng) => {
    const line = rng.next() < 0.9 ? mutate(rng, INCIDENT) : text(rng, 100);
    const record = parseIncident(line);
    if (typeof record === "string") {
      assertOneLine(record, line);
      return;
    }
    const report = buildReport([record], 0, 1_800_000_000_000, 0);
    renderReport(report);
    JSON.stringify(report);
  });
  assert.ok(ms < 5000, `${ms} ms`);
});
