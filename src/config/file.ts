// deno-lint-ignore-file camelcase -- the file's keys are snake_case, as TOML files' usually are
/**
 * The configuration file, /etc/php-relaunch/config.toml: parsed with smol-toml and validated
 * with valibot, so that every error names the key, the value and what is allowed.
 */
import { format as formatDuration, parse as parseDuration } from "@lukeed/ms";
import { parse, TomlError } from "smol-toml";
import * as v from "valibot";
import { type Rung, RUNGS } from "../act/restart.ts";
import { withoutUserinfo } from "../shared/redact.ts";
import { custom, keyPath, transform } from "../shared/schema.ts";
import { type FleetFile, fleetFileSchema } from "./fleet_settings.ts";
import { balancerSection, type FileBalancer } from "./balancer_settings.ts";

/** The default configuration file. */
export const DEFAULT_CONFIG_FILE = "/etc/php-relaunch/config.toml";

/** The default configuration file on `os`: FreeBSD keeps packages' files under /usr/local/etc. */
export function defaultConfigFile(os: string): string {
  return os === "freebsd" ? "/usr/local/etc/php-relaunch/config.toml" : DEFAULT_CONFIG_FILE;
}

/** The longest mail address, as RFC 5321 allows in a path. */
export const MAX_ADDRESS_LENGTH = 254;
/** The most recipients an alert has: more is a list for a mailing list to keep. */
export const MAX_RECIPIENTS = 50;

const email = v.pipe(v.string(), v.maxLength(MAX_ADDRESS_LENGTH), v.rfcEmail());

/**
 * Whether `value` is a mail address (user@host; a bare host such as root@localhost is allowed)
 * of at most {@link MAX_ADDRESS_LENGTH} characters.
 */
export function isEmailAddress(value: string): boolean {
  return v.is(email, value);
}

const shown = (value: unknown) => JSON.stringify(value);
const what = (value: unknown, show = shown) =>
  value === undefined ? "missing" : `${show(value)} is not allowed`;

/** A URL's value, shown without userinfo. */
const shownUrl = (value: unknown) =>
  shown(typeof value === "string" ? withoutUserinfo(value) : value);
/** A webhook URL's value is its secret: only its size is shown. */
const shownSecret = (value: unknown) =>
  `the value (${
    typeof value === "string" ? `${value.length} characters` : typeof value
  }, not shown: it holds a secret)`;

/** How the value at a key is shown in its errors. */
function shownAt(key: string): (value: unknown) => string {
  return key === "webhook.url" ? shownSecret : key.endsWith("url") ? shownUrl : shown;
}

/**
 * A duration: a number of seconds (0.5 allowed), or a string with a unit ("500ms", "5s", "15m");
 * `orOff`: 0 too, meaning "never".
 */
const duration = (min: number, max: number, orOff = false) =>
  transform(v.unknown(), (value, ctx) => {
    if (orOff && value === 0) return 0;
    const out = typeof value === "number"
      ? value * 1000
      : typeof value === "string" && /[a-z]\s*$/i.test(value)
      ? parseDuration(value)
      : NaN;
    if (typeof out !== "number" || !Number.isFinite(out) || out < min || out > max) {
      return custom(
        ctx,
        `${what(value)}: expected ${orOff ? "0 (off) or " : ""}a duration from ${
          formatDuration(min)
        } to ${
          formatDuration(max, true)
        }, as seconds (5, 0.5) or with a unit ("500ms", "5s", "15m")`,
      );
    }
    return out;
  });

const count = (min: number, max: number) =>
  transform(v.unknown(), (value, ctx) => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      return custom(ctx, `${what(value)}: expected a whole number from ${min} to ${max}`);
    }
    return value;
  });

const text = (expected: string, pattern: RegExp, show = shown) =>
  transform(v.unknown(), (value, ctx) => {
    if (typeof value !== "string" || !pattern.test(value)) {
      return custom(ctx, `${what(value, show)}: expected ${expected}`);
    }
    return value;
  });

const absolutePath = text("an absolute path", /^\//);
const emailAddress = transform(v.unknown(), (value, ctx) => {
  if (typeof value !== "string" || !isEmailAddress(value)) {
    return custom(
      ctx,
      `${
        what(value)
      }: expected an email address user@host of at most ${MAX_ADDRESS_LENGTH} characters`,
    );
  }
  return value;
});
const plainName = text("a plain name such as php8.2-fpm", /^[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}$/);

/** One of `values`; the error names the value and `expected`. */
const oneOf = <const T extends readonly string[]>(values: T, expected: string) =>
  v.picklist(values, (issue) => `${what(issue.input)}: expected ${expected}`);

/**
 * The most crashes `warn_child_crashes` may wait for: each pool's recent crashes are kept in the
 * state file (1 MiB at most) until they reach it.
 */
export const MAX_CHILD_CRASHES = 100;

/**
 * `warn_child_crashes`: a number of crashes within 60 s, or "N in DURATION" ("5 in 60s"); 0
 * turns the warning off.
 */
const childCrashes = transform(v.unknown(), (value, ctx) => {
  const m = typeof value === "string" ? /^\s*(\d+)\s+in\s+(\S+)\s*$/.exec(value) : null;
  const n = typeof value === "number" ? value : m ? Number(m[1]) : NaN;
  const ms = typeof value === "number" ? 60_000 : m ? parseDuration(m[2]!) : NaN;
  if (
    !Number.isInteger(n) || n < 0 || n > MAX_CHILD_CRASHES || typeof ms !== "number" ||
    !Number.isFinite(ms) || ms < 1000 || ms > 86_400_000
  ) {
    return custom(
      ctx,
      `${
        what(value)
      }: expected a number of crashes from 0 (off) to ${MAX_CHILD_CRASHES} (within 60 s), or "N in DURATION" ("5 in 60s"), the duration from 1s to 1d`,
    );
  }
  return { count: n, windowMs: ms };
});

/** Settings a target may have, and [defaults] may give to all. */
const policyKeys = {
  timeout: duration(100, 60_000),
  interval: duration(100, 3_600_000),
  "failure_threshold": count(1, 100),
  "timeout_threshold": count(1, 100),
  "success_threshold": count(1, 100),
  "confirm_delay": duration(0, 60_000),
  "grace_period": duration(0, 3_600_000),
  "max_restarts": count(0, 1000),
  "restart_window": duration(1000, 7 * 86_400_000),
  "rearm_after": duration(1000, 7 * 86_400_000),
  reminder: duration(60_000, 7 * 86_400_000, true),
  "retry_after": v.pipe(
    v.array(duration(1000, 7 * 86_400_000)),
    v.maxLength(20, "too many delays: expected at most 20 (the last one repeats)"),
  ),
  "pause_default": duration(1000, 7 * 86_400_000),
  "pause_max": duration(1000, 30 * 86_400_000),
  "start_timeout": duration(1000, 600_000),
  rungs: v.pipe(
    v.array(oneOf(RUNGS, `rungs from ${RUNGS.join(", ")}`)),
    v.minLength(1, "[] is not allowed: expected at least one rung"),
  ),
  "mail_to": v.pipe(
    v.array(emailAddress),
    v.maxLength(
      MAX_RECIPIENTS,
      (issue) =>
        `${
          issue.received.replace(/^\d+$/, "$& recipients")
        } are too many: expected at most ${MAX_RECIPIENTS}`,
    ),
  ),
  "php_cgi": v.boolean(),
  "stuck_after": duration(1000, 86_400_000, true),
  "on_overload": oneOf(["alert", "restart"], `"alert" or "restart"`),
  "warn_listen_queue": count(0, 100_000),
  "warn_slow_requests": count(0, 100_000),
  "warn_max_children": v.boolean(),
  "warn_every": duration(0, 7 * 86_400_000),
  // MiB; 0: off
  "warn_pool_memory": count(0, 16 * 1024 * 1024),
  "warn_worker_memory": count(0, 1024 * 1024),
  "warn_child_crashes": childCrashes,
  "nginx_error_log": text('an absolute path, or "" for none', /^(\/.*)?$/),
  "upstream_kill_rounds": count(0, 100),
  // OPcache's status script is asked this often; 0: never
  "opcache_interval": duration(10_000, 86_400_000, true),
  // percentage points; 0: off
  "warn_opcache_hit_drop": count(0, 100),
};

const defaultsSchema = v.partial(v.strictObject(policyKeys));

/**
 * What the keys that must be there expect, by their key without list indexes: valibot reports a
 * missing key before the key's own schema, which would have said it, runs.
 */
const REQUIRED: Record<string, string> = {
  "target": "at least one [[target]] with a name and a url",
  "target.name": "a plain name (letters, digits, . _ - +)",
  "target.url": "an http://, https://, fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH URL",
  "target.pool.name": "the pool's name, as in php-fpm's [section] (letters, digits, . _ - +)",
  "target.pool.url":
    "the pool's ping: fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH (or an http:// heartbeat served by it)",
  "webhook.url": "an http:// or https:// URL",
  "alertmanager.url": "Alertmanager's http:// or https:// base URL, e.g. http://127.0.0.1:9093",
  "balancer.agent_listen": "the agent's ADDRESS:PORT, e.g. 127.0.0.1:977",
};

const heartbeatUrl = (expected: string) =>
  text(expected, /^(https?:\/\/[^/\s]+|fcgi:\/\/[^/\s]+|fcgi\+unix:\/\/\/\S+)/, shownUrl);
const statusUrl = text(
  "fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH (php-fpm's pm.status_path)",
  /^(fcgi:\/\/[^/\s]+\/\S*|fcgi\+unix:\/\/\/\S+)$/,
  shownUrl,
);
const expectText = text("a text of at most 200 characters", /^[\s\S]{0,200}$/);
const poolName = (expected: string) => text(expected, /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/);

/** The most pools one service's target probes on their own. */
export const MAX_POOLS = 64;

/** Another pool of the target's php-fpm, probed and handled on its own. */
const poolSchema = v.strictObject({
  name: poolName(REQUIRED["target.pool.name"]!),
  url: heartbeatUrl(REQUIRED["target.pool.url"]!),
  "status_url": v.optional(statusUrl),
  expect: v.optional(expectText),
  "stuck_after": v.optional(duration(1000, 86_400_000, true)),
});

const targetSchema = v.strictObject({
  name: poolName(REQUIRED["target.name"]!),
  url: heartbeatUrl(REQUIRED["target.url"]!),
  "status_url": v.optional(statusUrl),
  // the pool `url` probes, by its name in php-fpm's configuration
  "pool_name": v.optional(poolName("the pool's name, as in php-fpm's [section]")),
  pool: v.optional(v.pipe(
    v.array(poolSchema),
    v.maxLength(MAX_POOLS, `too many pools: expected at most ${MAX_POOLS}`),
  )),
  "fpm_config": v.optional(absolutePath),
  expect: v.optional(expectText),
  service: v.optional(plainName),
  "process_name": v.optional(plainName),
  "cgi_service": v.optional(plainName),
  "cgi_process_name": v.optional(plainName),
  "pid_file": v.optional(absolutePath),
  ...v.partial(v.object(policyKeys)).entries,
}) as v.GenericSchema<unknown, FileTarget>;

/** One [[target.pool]] as written: another pool of the target's php-fpm. */
export interface FilePool {
  name: string;
  url: string;
  status_url?: string;
  expect?: string;
  stuck_after?: number;
}

/** One [[target]] as written (durations already in milliseconds). */
export interface FileTarget extends Partial<FilePolicy> {
  name: string;
  url: string;
  /** The name of the pool `url` probes. */
  pool_name?: string;
  /** The service's other pools, each probed and handled on its own. */
  pool?: FilePool[];
  service?: string;
  process_name?: string;
  cgi_service?: string;
  cgi_process_name?: string;
  pid_file?: string;
  status_url?: string;
  fpm_config?: string;
  expect?: string;
}

/** The per-target settings, with durations in milliseconds. */
export interface FilePolicy {
  timeout: number;
  interval: number;
  "failure_threshold": number;
  "timeout_threshold": number;
  "success_threshold": number;
  "confirm_delay": number;
  "grace_period": number;
  "max_restarts": number;
  "restart_window": number;
  "rearm_after": number;
  reminder: number;
  /** Given up, the delays before each single retry; the last repeats; [] never retries. */
  "retry_after": number[];
  "pause_default": number;
  "pause_max": number;
  "start_timeout": number;
  rungs: Rung[];
  "mail_to": string[];
  "php_cgi": boolean;
  /** 0: the probe's timeout. */
  "stuck_after": number;
  "on_overload": "alert" | "restart";
  "warn_listen_queue": number;
  "warn_slow_requests": number;
  "warn_max_children": boolean;
  "warn_every": number;
  /** Warn when the pool's processes hold more than this many MiB resident; 0: off. */
  "warn_pool_memory": number;
  /** Warn when a worker holds more than this many MiB resident; 0: off. */
  "warn_worker_memory": number;
  /** Alert when a pool's children crash this many times within the window; count 0: off. */
  "warn_child_crashes": { count: number; windowMs: number };
  /** nginx's error log, for the requests lost when children crash ("": none). */
  "nginx_error_log": string;
  /** Rounds of killing the stuck workers one upstream incident allows; 0: none. */
  "upstream_kill_rounds": number;
  /** How often OPcache's status script is asked (ms); 0: never. */
  "opcache_interval": number;
  /** Warn when OPcache's hit rate falls by this many percentage points; 0: off. */
  "warn_opcache_hit_drop": number;
}

const fileSchema = v.strictObject({
  defaults: v.optional(defaultsSchema),
  mail: v.optional(v.strictObject({
    transport: v.optional(oneOf(["smtp", "sendmail"], `"smtp" or "sendmail"`)),
    "smtp_host": v.optional(text("a host name or address", /^[A-Za-z0-9.:[\]-]+$/)),
    "smtp_port": v.optional(count(1, 65535)),
    tls: v.optional(
      oneOf(["auto", "starttls", "tls", "none"], `"auto", "starttls", "tls" or "none"`),
    ),
    user: v.optional(text("a user name", /^[^\s]{1,200}$/)),
    "password_file": v.optional(absolutePath),
    "ca_file": v.optional(absolutePath),
    sendmail: v.optional(absolutePath),
    from: v.optional(emailAddress),
  })),
  webhook: v.optional(v.strictObject({
    url: text(REQUIRED["webhook.url"]!, /^https?:\/\/[^/\s]+/, shownSecret),
  })),
  alertmanager: v.optional(v.strictObject({
    url: text(REQUIRED["alertmanager.url"]!, /^https?:\/\/[^/\s]+/, shownSecret),
  })),
  // the dead-man's switch (config/deadman_settings.ts): its URL's path is its secret too
  deadman: v.optional(v.strictObject({
    url: v.optional(text("an http:// or https:// push URL", /^https?:\/\/[^/\s]+/, shownSecret)),
    every: v.optional(duration(1000, 3_600_000)),
  })),
  metrics: v.optional(v.strictObject({
    file: v.optional(absolutePath),
    listen: v.optional(text("127.0.0.1:PORT (loopback only)", /^\S+:\d+$/)),
  })),
  // HAProxy's agent-check (see balancer_settings.ts)
  balancer: v.optional(balancerSection),
  log: v.optional(v.strictObject({
    file: v.optional(absolutePath),
    format: v.optional(oneOf(["text", "json"], `"text" or "json"`)),
  })),
  state: v.optional(v.strictObject({
    dir: v.optional(absolutePath),
    lock_dir: v.optional(absolutePath),
  })),
  init: v.optional(
    oneOf(["systemd", "sysv", "openrc", "freebsd"], "systemd, sysv, openrc or freebsd"),
  ),
  // the targets `discover` finds, instead of (or beside none of) [[target]]
  auto: v.optional(v.boolean()),
  // the restart cap across servers, in etcd (config/fleet_settings.ts)
  fleet: v.optional(fleetFileSchema),
  target: v.optional(
    v.pipe(v.array(targetSchema), v.minLength(1, "expected at least one [[target]]")),
  ),
});

/** The file's contents, validated. */
export interface ConfigFile {
  defaults: Partial<FilePolicy>;
  mail: {
    transport?: "smtp" | "sendmail" | undefined;
    smtp_host?: string | undefined;
    smtp_port?: number | undefined;
    tls?: "auto" | "starttls" | "tls" | "none" | undefined;
    user?: string | undefined;
    password_file?: string | undefined;
    ca_file?: string | undefined;
    sendmail?: string | undefined;
    from?: string | undefined;
  };
  webhook: { url?: string | undefined };
  alertmanager: { url?: string | undefined };
  /** The dead-man's switch: its push URL, and watch mode's ping period (ms). */
  deadman: { url?: string | undefined; every?: number | undefined };
  metrics: { file?: string | undefined; listen?: string | undefined };
  /** HAProxy's agent-check, answered by watch mode. */
  balancer?: FileBalancer;
  log: { file?: string | undefined; format?: "text" | "json" | undefined };
  state: { dir?: string | undefined; lock_dir?: string | undefined };
  init?: "systemd" | "sysv" | "openrc" | "freebsd";
  /** Watch what `discover` finds; the file's [[target]]s, if any, are not used. */
  auto: boolean;
  /** The restart cap across servers, when set. */
  fleet?: FleetFile;
  target: FileTarget[];
}

const keyOf = (path: readonly { key: unknown }[] | undefined) => keyPath(path) || "(top level)";

/** One problem as "path: key: what is wrong". */
function describeIssue(path: string, issue: v.BaseIssue<unknown>): string {
  if (issue.type === "strict_object" && issue.expected === "never") {
    const at = issue.path ?? [];
    return `${path}: ${keyOf(at.slice(0, -1))}: unknown key "${String(at.at(-1)?.key)}"`;
  }
  if (issue.kind === "schema" && issue.input === undefined) {
    const expected = REQUIRED[keyPath(issue.path).replace(/\[\d+\]/g, "")];
    return `${path}: ${keyOf(issue.path)}: missing${expected ? `: expected ${expected}` : ""}`;
  }
  // a wrong type (boolean, table, list): valibot's own words, said the way ours are; a picklist
  // (oneOf) already says it our way
  if (issue.kind === "schema" && issue.type !== "picklist") {
    return `${path}: ${keyOf(issue.path)}: ${
      shownAt(keyPath(issue.path).replace(/\[\d+\]/g, ""))(issue.input)
    } is not allowed: expected ${issue.expected?.toLowerCase()}`;
  }
  return `${path}: ${keyOf(issue.path)}: ${issue.message}`;
}

/**
 * Parses and validates the text of a configuration file.
 * @returns the file, or every problem as "path: key: what is wrong".
 */
export function parseConfigFile(path: string, text: string): ConfigFile | string[] {
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    const detail = err instanceof TomlError
      ? `line ${err.line}, column ${err.column}: ${err.message.split("\n")[0]}`
      : String(err);
    return [`Cannot parse ${path}: ${detail}`];
  }
  const result = v.safeParse(fileSchema, data);
  if (!result.success) return result.issues.map((issue) => describeIssue(path, issue));
  const valid = result.output;
  if (valid.target === undefined && valid.auto !== true) {
    return [`${path}: target: missing: expected ${REQUIRED["target"]} (or auto = true)`];
  }
  const targets = valid.target ?? [];
  const names = targets.map((t) => t.name);
  const twice = names.filter((n, i) => names.indexOf(n) !== i);
  if (twice.length > 0) return [`${path}: target: the name "${twice[0]}" is used twice`];
  const poolProblems = targets.flatMap((t) => {
    if (t.pool === undefined) return [];
    const pools = [t.pool_name ?? null, ...t.pool.map((p) => p.name)].filter((n) => n !== null);
    const again = pools.find((n, i) => pools.indexOf(n) !== i);
    return again === undefined
      ? []
      : [`${path}: target "${t.name}": the pool name "${again}" is used twice`];
  });
  if (poolProblems.length > 0) return poolProblems;
  return {
    defaults: (valid.defaults ?? {}) as Partial<FilePolicy>,
    mail: valid.mail ?? {},
    webhook: valid.webhook ?? {},
    alertmanager: valid.alertmanager ?? {},
    deadman: valid.deadman ?? {},
    metrics: valid.metrics ?? {},
    ...(valid.balancer ? { balancer: valid.balancer } : {}),
    log: valid.log ?? {},
    state: valid.state ?? {},
    ...(valid.init ? { init: valid.init } : {}),
    auto: valid.auto === true,
    ...(valid.fleet ? { fleet: valid.fleet } : {}),
    target: targets,
  };
}

/** The defaults of watch mode and of the configuration file. */
export const WATCH_DEFAULTS: FilePolicy = {
  timeout: 5000,
  interval: 5000,
  "failure_threshold": 2,
  "timeout_threshold": 2,
  "success_threshold": 1,
  "confirm_delay": 1000,
  "grace_period": 10_000,
  "max_restarts": 3,
  "restart_window": 15 * 60_000,
  "rearm_after": 15 * 60_000,
  reminder: 0,
  "retry_after": [5 * 60_000, 15 * 60_000, 3_600_000],
  "pause_default": 30 * 60_000,
  "pause_max": 4 * 3_600_000,
  "start_timeout": 10_000,
  rungs: ["kill_stuck", "reload", "restart", "kill"],
  "mail_to": [],
  "php_cgi": false,
  "stuck_after": 0,
  "on_overload": "alert",
  "warn_listen_queue": 5,
  "warn_slow_requests": 5,
  "warn_max_children": true,
  "warn_every": 15 * 60_000,
  "warn_pool_memory": 0,
  "warn_worker_memory": 0,
  "warn_child_crashes": { count: 5, windowMs: 60_000 },
  "nginx_error_log": "/var/log/nginx/error.log",
  "upstream_kill_rounds": 1,
  "opcache_interval": 60_000,
  "warn_opcache_hit_drop": 10,
};
