/**
 * The command line's settings (and the environment's, for mail): each flag's check, in valibot
 * schemas whose problems are whole sentences naming the value. URLs are checked here for every
 * form: length, scheme, userinfo, the ports fetch refuses, FastCGI paths.
 */
import { resolve } from "node:path";
import { parse as parseDuration } from "@lukeed/ms";
import * as v from "valibot";
import { INIT_SYSTEMS } from "../act/service.ts";
import type { Host } from "../shared/deps.ts";
import { ConfigError } from "../shared/errors.ts";
import { custom, transform } from "../shared/schema.ts";
import { isEmailAddress, MAX_ADDRESS_LENGTH, MAX_RECIPIENTS } from "./file.ts";
import { ENV, type Mode, type RawSettings } from "./settings.ts";
import { checkUrl, checkWebhook, parseListen } from "./urls.ts";

const YES = new Set(["1", "yes", "true", "on", "y"]);
const NO = new Set(["0", "no", "false", "off", "n", ""]);

const urlField = (fcgiOnly: boolean) =>
  transform(v.string(), (value, ctx) => {
    const url = checkUrl(value, fcgiOnly);
    return typeof url === "string" ? custom(ctx, url) : url;
  });

const timeoutField = transform(v.string(), (value, ctx) => {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 60) {
    return custom(
      ctx,
      `Cannot parse timeout "${value}": expected a whole number of seconds from 1 to 60`,
    );
  }
  return n * 1000;
});

const runForField = transform(v.string(), (value, ctx) => {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 3600) {
    return custom(
      ctx,
      `Cannot parse run-for "${value}": expected the scheduler's period in whole seconds, 1 to 3600`,
    );
  }
  return n * 1000;
});

const mailToField = transform(v.string(), (value, ctx) => {
  const addresses = value.split(",").map((a) => a.trim()).filter((a) => a !== "");
  const bad = addresses.filter((a) => !isEmailAddress(a));
  if (bad.length > 0) {
    const shown = bad[0]!.length > 60 ? `${bad[0]!.slice(0, 60)}…` : bad[0];
    return custom(
      ctx,
      `Cannot use email address "${shown}": expected user@host of at most ${MAX_ADDRESS_LENGTH} characters, several separated by commas, or '' for none`,
    );
  }
  const unique = [...new Set(addresses)];
  if (unique.length > MAX_RECIPIENTS) {
    return custom(
      ctx,
      `Cannot mail ${unique.length} recipients: at most ${MAX_RECIPIENTS} (use a mailing list)`,
    );
  }
  return unique;
});

const restartCgiField = transform(v.union([v.boolean(), v.string()]), (value, ctx) => {
  if (typeof value === "boolean") return value;
  const word = value.trim().toLowerCase();
  if (YES.has(word)) return true;
  if (NO.has(word)) return false;
  return custom(
    ctx,
    `Cannot parse restart-cgi "${value}": expected 1 (also restart php-cgi) or 0 (do not)`,
  );
});

const portField = (name: string) =>
  transform(v.string(), (value, ctx) => {
    const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      return custom(ctx, `Cannot parse ${name} "${value}": expected a port number from 1 to 65535`);
    }
    return n;
  });

const nameField = (name: string) =>
  transform(v.string(), (value, ctx) => {
    // a service or process name is passed as one argument to service/ps: keep it plain
    if (!/^[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}$/.test(value)) {
      return custom(
        ctx,
        `Cannot use ${name} "${value}": expected a plain name such as php8.2-fpm (letters, digits, . _ + - @)`,
      );
    }
    return value;
  });

const pathField = (name: string) =>
  transform(v.string(), (value, ctx) => {
    if (!value.startsWith("/")) {
      return custom(ctx, `Cannot use ${name} "${value}": expected an absolute path`);
    }
    return value;
  });

const hostField = transform(v.string(), (value, ctx) => {
  if (!/^[A-Za-z0-9.:[\]-]+$/.test(value)) {
    return custom(ctx, `Cannot use SMTP host "${value}": expected a host name or address`);
  }
  return value;
});

const fromField = transform(v.string(), (value, ctx) => {
  if (!isEmailAddress(value)) {
    return custom(ctx, `Cannot use sender "${value}": expected user@host`);
  }
  return value;
});

const initField = transform(v.string(), (value, ctx) => {
  const init = INIT_SYSTEMS.find((i) => i === value);
  if (init === undefined) {
    return custom(
      ctx,
      `Cannot use init system "${value}": expected one of ${INIT_SYSTEMS.join(", ")}`,
    );
  }
  return init;
});

const intervalField = transform(v.string(), (value, ctx) => {
  const n = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!(n >= 0.1 && n <= 3600)) {
    return custom(
      ctx,
      `Cannot parse interval "${value}": expected seconds from 0.1 to 3600 (0.5 allowed)`,
    );
  }
  return Math.round(n * 1000);
});

/** How far back `report` may look. */
const MAX_SINCE_MS = 100 * 365.25 * 86_400_000;

const sinceField = transform(v.string(), (value, ctx) => {
  const out = /^\d+(\.\d+)?\s*[a-z]+$/i.test(value.trim()) ? parseDuration(value.trim()) : NaN;
  if (typeof out !== "number" || !(out > 0 && out <= MAX_SINCE_MS)) {
    return custom(
      ctx,
      `Cannot parse since "${value}": expected a duration such as 24h, 7d or 30d, at most 100y`,
    );
  }
  return out;
});

/** The longest pause --for may ask; each target's pause_max may allow less. */
const MAX_PAUSE_MS = 30 * 86_400_000;

const pauseForField = transform(v.string(), (value, ctx) => {
  const out = /^\d+(\.\d+)?\s*[a-z]+$/i.test(value.trim()) ? parseDuration(value.trim()) : NaN;
  if (typeof out !== "number" || !(out >= 1000 && out <= MAX_PAUSE_MS)) {
    return custom(
      ctx,
      `Cannot pause for "${value}": expected a duration such as 90s, 30m or 2h, at most 30d`,
    );
  }
  return out;
});

const reasonField = v.pipe(
  v.string(),
  v.regex(/^[^\p{Cc}]{1,200}$/u, "Cannot use the reason: expected one line of 1 to 200 characters"),
);

const reportFormatField = transform(v.string(), (value, ctx) => {
  if (value !== "text" && value !== "json") {
    return custom(ctx, `Cannot use report format "${value}": expected text or json`);
  }
  return value;
});

const choice = <T extends string>(name: string, allowed: readonly T[]) =>
  transform(v.string(), (value, ctx) => {
    const found = allowed.find((a) => a === value);
    if (found === undefined) {
      return custom(ctx, `Cannot use ${name} "${value}": expected ${allowed.join(", ")}`);
    }
    return found;
  });

const webhookField = transform(v.string(), (value, ctx) => {
  const url = checkWebhook(value);
  return typeof url === "string" ? custom(ctx, url) : url;
});

const listenField = transform(v.string(), (value, ctx) => {
  const listen = parseListen(value);
  return typeof listen === "string" ? custom(ctx, listen) : listen;
});

const logFormatField = transform(v.string(), (value, ctx) => {
  if (value !== "text" && value !== "json") {
    return custom(ctx, `Cannot use log format "${value}": expected text or json`);
  }
  return value;
});

const settingsSchema = v.object({
  url: v.optional(urlField(false)),
  statusUrl: v.optional(urlField(true)),
  expect: v.optional(
    v.pipe(v.string(), v.maxLength(200, "Cannot use expect: at most 200 characters")),
  ),
  since: v.optional(sinceField),
  mailTransport: v.optional(choice("mail transport", ["smtp", "sendmail"] as const)),
  smtpTls: v.optional(choice("SMTP TLS mode", ["auto", "starttls", "tls", "none"] as const)),
  smtpUser: v.optional(
    v.pipe(v.string(), v.regex(/^\S{1,200}$/, "Cannot use SMTP user: expected a user name")),
  ),
  smtpPasswordFile: v.optional(pathField("SMTP password file")),
  webhook: v.optional(webhookField),
  metricsFile: v.optional(pathField("metrics file")),
  metricsListen: v.optional(listenField),
  format: v.optional(reportFormatField),
  timeout: v.optional(timeoutField),
  interval: v.optional(intervalField),
  runFor: runForField,
  mailTo: v.optional(mailToField),
  restartCgi: v.optional(restartCgiField),
  service: v.optional(nameField("service")),
  processName: v.optional(nameField("process name")),
  cgiService: v.optional(nameField("php-cgi service")),
  cgiProcessName: v.optional(nameField("php-cgi process name")),
  // a file to read, unlike the paths we write, may be named relative to where we stand
  config: v.optional(v.pipe(v.string(), v.transform((value) => resolve(value)))),
  logFile: v.optional(pathField("log file")),
  logFormat: v.optional(logFormatField),
  lockFile: v.optional(pathField("lock file")),
  stateDir: v.optional(pathField("state folder")),
  init: v.optional(initField),
  smtpHost: v.optional(hostField),
  smtpPort: v.optional(portField("SMTP port")),
  mailFrom: v.optional(fromField),
  commandTarget: v.optional(nameField("target")),
  pauseFor: v.optional(pauseForField),
  reason: v.optional(reasonField),
  auto: v.optional(v.boolean()),
});

/** The command line's settings, validated. */
export type Settings = v.InferOutput<typeof settingsSchema>;

const DEFAULT_RUN_FOR = "60";

/** `o` without its undefined properties: what a spread must not lay over defaults. */
export function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Step 1: the command line (flags merged with positionals) and, for mail, the environment; with
 * the problems that do not keep the next steps from going on.
 * @throws {ConfigError} with every problem of the flags when they cannot be read.
 */
export function parseSettings(
  mode: Mode,
  raw: RawSettings,
  host: Host,
): { settings: Settings; problems: string[] } {
  const issues: string[] = [];
  if (raw.restart && mode !== "once") {
    issues.push("Cannot use --restart without --once: a normal run restarts php-fpm anyway");
  }
  const parsed = v.safeParse(settingsSchema, {
    runFor: raw.runFor ?? DEFAULT_RUN_FOR,
    ...stripUndefined({
      url: raw.url,
      timeout: raw.timeout,
      interval: raw.interval,
      mailTo: raw.mailTo,
      restartCgi: raw.restartCgi,
      service: raw.service,
      processName: raw.processName,
      cgiService: raw.cgiService,
      cgiProcessName: raw.cgiProcessName,
      config: raw.config,
      logFile: raw.logFile,
      logFormat: raw.logFormat,
      lockFile: raw.lockFile,
      stateDir: raw.stateDir,
      init: raw.init,
      smtpHost: raw.smtpHost ?? host.env(ENV.smtpHost),
      smtpPort: raw.smtpPort ?? host.env(ENV.smtpPort),
      mailFrom: raw.mailFrom ?? host.env(ENV.mailFrom),
      commandTarget: raw.commandTarget,
      pauseFor: raw.pauseFor,
      reason: raw.reason,
      auto: raw.auto,
      statusUrl: raw.statusUrl,
      expect: raw.expect,
      since: raw.since,
      format: raw.format,
      mailTransport: raw.mailTransport,
      smtpTls: raw.smtpTls,
      smtpUser: raw.smtpUser ?? host.env(ENV.smtpUser),
      smtpPasswordFile: raw.smtpPasswordFile,
      webhook: raw.webhook ?? host.env(ENV.webhook),
      metricsFile: raw.metricsFile,
      metricsListen: raw.metricsListen,
    }),
  });
  if (!parsed.success) {
    throw new ConfigError([...issues, ...parsed.issues.map((i) => i.message)]);
  }
  return { settings: parsed.output, problems: issues };
}
