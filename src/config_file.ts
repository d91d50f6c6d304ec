// deno-lint-ignore-file camelcase -- the file's keys are snake_case, as TOML files' usually are
/**
 * The configuration file, /etc/php-relaunch/config.toml: parsed with smol-toml and validated
 * with zod, so that every error names the key, the value and what is allowed.
 */
import ms from "ms";
import { parse, TomlError } from "smol-toml";
import { z } from "zod";

/** The default configuration file. */
export const DEFAULT_CONFIG_FILE = "/etc/php-relaunch/config.toml";

/** The default configuration file on `os`: FreeBSD keeps packages' files under /usr/local/etc. */
export function defaultConfigFile(os: string): string {
  return os === "freebsd" ? "/usr/local/etc/php-relaunch/config.toml" : DEFAULT_CONFIG_FILE;
}

/** Records a validation problem whose message says it all; for zod transforms. */
export function custom(ctx: z.RefinementCtx, message: string): typeof z.NEVER {
  ctx.addIssue({ code: "custom", message });
  return z.NEVER;
}

const email = z.email({ pattern: z.regexes.html5Email });

/** Whether `value` is a mail address (the HTML5 rule, which allows root@localhost). */
export function isEmailAddress(value: string): boolean {
  return email.safeParse(value).success;
}

const shown = (value: unknown) => JSON.stringify(value);
const what = (value: unknown) => value === undefined ? "missing" : `${shown(value)} is not allowed`;

/** A duration: a number of seconds (0.5 allowed), or a string with a unit ("500ms", "5s", "15m"). */
const duration = (min: number, max: number) =>
  z.union([z.number(), z.string()]).transform((value, ctx) => {
    const out = typeof value === "number"
      ? value * 1000
      : /[a-z]\s*$/i.test(value)
      ? ms(value as Parameters<typeof ms>[0])
      : NaN;
    if (typeof out !== "number" || !Number.isFinite(out) || out < min || out > max) {
      return custom(
        ctx,
        `${shown(value)} is not allowed: expected a duration from ${ms(min)} to ${
          ms(max, { long: true })
        }, as seconds (5, 0.5) or with a unit ("500ms", "5s", "15m")`,
      );
    }
    return out;
  });

const count = (min: number, max: number) =>
  z.unknown().transform((value, ctx) => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      return custom(ctx, `${what(value)}: expected a whole number from ${min} to ${max}`);
    }
    return value;
  });

const text = (expected: string, pattern: RegExp) =>
  z.unknown().transform((value, ctx) => {
    if (typeof value !== "string" || !pattern.test(value)) {
      return custom(ctx, `${what(value)}: expected ${expected}`);
    }
    return value;
  });

const absolutePath = text("an absolute path", /^\//);
const emailAddress = z.unknown().transform((value, ctx) => {
  if (typeof value !== "string" || !isEmailAddress(value)) {
    return custom(ctx, `${what(value)}: expected an email address user@host`);
  }
  return value;
});
const plainName = text("a plain name such as php8.2-fpm", /^[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}$/);

/** The restart ladder's rungs, gentlest first. */
export const RUNGS = ["kill_stuck", "reload", "restart", "kill"] as const;
export type Rung = typeof RUNGS[number];

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
  reminder: z.union([z.literal(0), duration(60_000, 7 * 86_400_000)]),
  "start_timeout": duration(1000, 600_000),
  rungs: z.array(z.enum(RUNGS, {
    error: (issue) =>
      `${shown(issue.input)} is not allowed: expected rungs from ${RUNGS.join(", ")}`,
  })).min(1),
  "mail_to": z.array(emailAddress),
  "php_cgi": z.boolean(),
  "stuck_after": z.union([z.literal(0), duration(1000, 86_400_000)]),
  "on_overload": z.enum(["alert", "restart"], {
    error: (issue) => `${shown(issue.input)} is not allowed: expected "alert" or "restart"`,
  }),
  "warn_listen_queue": count(0, 100_000),
  "warn_slow_requests": count(0, 100_000),
  "warn_max_children": z.boolean(),
  "warn_every": duration(0, 7 * 86_400_000),
};

const defaultsSchema = z.strictObject(policyKeys).partial();

const targetSchema = z.strictObject({
  name: text("a plain name (letters, digits, . _ - +)", /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/),
  url: text(
    "an http://, https://, fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH URL",
    /^(https?:\/\/[^/\s]+|fcgi:\/\/[^/\s]+|fcgi\+unix:\/\/\/\S+)/,
  ),
  "status_url": text(
    "fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH (php-fpm's pm.status_path)",
    /^(fcgi:\/\/[^/\s]+\/\S*|fcgi\+unix:\/\/\/\S+)$/,
  ).optional(),
  "fpm_config": absolutePath.optional(),
  expect: z.string().max(200).optional(),
  service: plainName.optional(),
  "process_name": plainName.optional(),
  "cgi_service": plainName.optional(),
  "cgi_process_name": plainName.optional(),
  "pid_file": absolutePath.optional(),
  ...Object.fromEntries(Object.entries(policyKeys).map(([k, v]) => [k, v.optional()])),
}) as z.ZodType<FileTarget>;

/** One [[target]] as written (durations already in milliseconds). */
export interface FileTarget extends Partial<FilePolicy> {
  name: string;
  url: string;
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
}

const fileSchema = z.strictObject({
  defaults: defaultsSchema.optional(),
  mail: z.strictObject({
    transport: z.enum(["smtp", "sendmail"], {
      error: (issue) => `${shown(issue.input)} is not allowed: expected "smtp" or "sendmail"`,
    }).optional(),
    "smtp_host": text("a host name or address", /^[A-Za-z0-9.:[\]-]+$/).optional(),
    "smtp_port": count(1, 65535).optional(),
    tls: z.enum(["auto", "starttls", "tls", "none"], {
      error: (issue) =>
        `${shown(issue.input)} is not allowed: expected "auto", "starttls", "tls" or "none"`,
    }).optional(),
    user: text("a user name", /^[^\s]{1,200}$/).optional(),
    "password_file": absolutePath.optional(),
    "ca_file": absolutePath.optional(),
    sendmail: absolutePath.optional(),
    from: emailAddress.optional(),
  }).optional(),
  webhook: z.strictObject({
    url: text("an http:// or https:// URL", /^https?:\/\/[^/\s]+/),
  }).optional(),
  metrics: z.strictObject({
    file: absolutePath.optional(),
    listen: text("127.0.0.1:PORT (loopback only)", /^\S+:\d+$/).optional(),
  }).optional(),
  log: z.strictObject({
    file: absolutePath.optional(),
    format: z.enum(["text", "json"], {
      error: (issue) => `${shown(issue.input)} is not allowed: expected "text" or "json"`,
    }).optional(),
  }).optional(),
  state: z.strictObject({
    dir: absolutePath.optional(),
    lock_dir: absolutePath.optional(),
  }).optional(),
  init: z.enum(["systemd", "sysv", "openrc", "freebsd"], {
    error: (issue) =>
      `${shown(issue.input)} is not allowed: expected systemd, sysv, openrc or freebsd`,
  }).optional(),
  target: z.array(targetSchema).min(1, { error: "expected at least one [[target]]" }),
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
  metrics: { file?: string | undefined; listen?: string | undefined };
  log: { file?: string | undefined; format?: "text" | "json" | undefined };
  state: { dir?: string | undefined; lock_dir?: string | undefined };
  init?: "systemd" | "sysv" | "openrc" | "freebsd";
  target: FileTarget[];
}

function keyOf(path: readonly PropertyKey[]): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)
    .join("") || "(top level)";
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
  const result = fileSchema.safeParse(data);
  if (!result.success) {
    return result.error.issues.map((issue) => {
      if (issue.code === "unrecognized_keys") {
        return `${path}: ${keyOf(issue.path)}: unknown key ${
          issue.keys.map((k) => `"${k}"`).join(", ")
        }`;
      }
      if (issue.code === "invalid_type" && issue.input === undefined) {
        return `${path}: ${keyOf(issue.path)}: missing`;
      }
      if (issue.code === "invalid_type") {
        return `${path}: ${keyOf(issue.path)}: ${
          shown(issue.input)
        } is not allowed: expected ${issue.expected}`;
      }
      return `${path}: ${keyOf(issue.path)}: ${issue.message}`;
    });
  }
  const names = result.data.target.map((t) => t.name);
  const twice = names.filter((n, i) => names.indexOf(n) !== i);
  if (twice.length > 0) return [`${path}: target: the name "${twice[0]}" is used twice`];
  return {
    defaults: (result.data.defaults ?? {}) as Partial<FilePolicy>,
    mail: result.data.mail ?? {},
    webhook: result.data.webhook ?? {},
    metrics: result.data.metrics ?? {},
    log: result.data.log ?? {},
    state: result.data.state ?? {},
    ...(result.data.init ? { init: result.data.init } : {}),
    target: result.data.target,
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
};
