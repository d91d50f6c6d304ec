/**
 * Turns the command line, the environment and the configuration file into a validated, frozen
 * {@link Config}. The only place that validates: every problem is collected into one
 * {@link ConfigError}.
 */
import { resolve } from "node:path";
import { parse as parseDuration } from "@lukeed/ms";
import * as v from "valibot";
import { custom, transform } from "./schema.ts";
import {
  type ConfigFile,
  defaultConfigFile,
  type FilePolicy,
  isEmailAddress,
  MAX_ADDRESS_LENGTH,
  MAX_RECIPIENTS,
  parseConfigFile,
  type Rung,
  WATCH_DEFAULTS,
} from "./config_file.ts";
import type { Deps, FcgiTarget, MailRoute } from "./deps.ts";
import { defaultFpmConfig } from "./fpm_config.ts";
import type { WarnLimits } from "./fpm_status.ts";
import { describeFcgiTarget, fcgiTargetOf, isFcgiUrl } from "./probe_fcgi.ts";
import { ConfigError, describeError } from "./errors.ts";
import { publicUrl, webhookName, withoutUserinfo } from "./redact.ts";
import type { Policy } from "./policy.ts";
import { settleMs } from "./schedule.ts";
import { statePath } from "./state.ts";
import { incidentsPath } from "./incidents.ts";
import { linkProblem, privateProblem } from "./safe_file.ts";
import {
  detectInit,
  findCgiServices,
  findFpmServices,
  findTools,
  INIT_SYSTEMS,
  type InitSystem,
  processNameFor,
  SEARCH_DIRS,
  SERVICE_DIRS,
  serviceExists,
  type ServiceTarget,
  type Tools,
} from "./service.ts";

/** What one invocation does. */
export type Mode =
  /** Watch for one scheduler period, restarting on failure (the cron form). */
  | "minute"
  /** One probe; the exit code is the verdict. */
  | "once"
  /** Validate and print the resolved settings. */
  | "check"
  /** Watch until stopped (the service form). */
  | "watch"
  /** Forget giving up and the restart history. */
  | "reset"
  /** Summarise the incident log. */
  | "report";

/** The settings as the command line gave them, before validation (all strings). */
export interface RawSettings {
  url?: string | undefined;
  timeout?: string | undefined;
  interval?: string | undefined;
  runFor?: string | undefined;
  mailTo?: string | undefined;
  restartCgi?: string | boolean | undefined;
  service?: string | undefined;
  processName?: string | undefined;
  cgiService?: string | undefined;
  cgiProcessName?: string | undefined;
  restart?: boolean | undefined;
  config?: string | undefined;
  logFile?: string | undefined;
  logFormat?: string | undefined;
  lockFile?: string | undefined;
  stateDir?: string | undefined;
  init?: string | undefined;
  smtpHost?: string | undefined;
  smtpPort?: string | undefined;
  mailFrom?: string | undefined;
  verbose?: boolean | undefined;
  /** `reset [target]`. */
  resetTarget?: string | undefined;
  statusUrl?: string | undefined;
  expect?: string | undefined;
  mailTransport?: string | undefined;
  smtpTls?: string | undefined;
  smtpUser?: string | undefined;
  smtpPasswordFile?: string | undefined;
  webhook?: string | undefined;
  metricsFile?: string | undefined;
  metricsListen?: string | undefined;
  /** `report --since`. */
  since?: string | undefined;
  /** `report --format`. */
  format?: string | undefined;
}

/** One watched heartbeat and the service it restarts. */
export interface Target {
  /** Names the target in logs, its state file and `reset` (the service, in the cron form). */
  readonly name: string;
  readonly url: URL;
  readonly timeoutMs: number;
  readonly policy: Policy;
  /** The restart ladder, gentlest first. */
  readonly rungs: readonly Rung[];
  /** How long each rung has to make the heartbeat healthy. */
  readonly startTimeoutMs: number;
  readonly fpm: ServiceTarget;
  /** Set when php-cgi is relaunched too (the original's 4th argument). */
  readonly cgi: ServiceTarget | null;
  /** php-fpm's pid file: its master, whose process group is the pool. */
  readonly pidFile: string | null;
  readonly mailTo: readonly string[];
  readonly lockFile: string;
  readonly stateFile: string;
  /** Set when the probe goes straight to php-fpm over FastCGI (`url` is fcgi:// or fcgi+unix://). */
  readonly fcgi: FcgiTarget | null;
  /** What a FastCGI probe's body must start with ("" for anything). */
  readonly expect: string;
  /** php-fpm's status page, read over FastCGI: early warnings, the hang check, evidence. */
  readonly status: FcgiTarget | null;
  /** True when the status page is served by the pool's own workers (no pm.status_listen). */
  readonly statusOnPool: boolean;
  /** php-fpm.conf, for the pool's settings and logs in the evidence. */
  readonly fpmConfig: string | null;
  /** A worker on one request this long, in a failing pool, is stuck (the kill_stuck rung). */
  readonly stuckAfterMs: number;
  readonly warn: WarnLimits;
  /** The same early warning is repeated at most this often. */
  readonly warnEveryMs: number;
}

/** Everything a run needs, validated. */
export interface Config {
  readonly mode: Mode;
  readonly targets: readonly Target[];
  /** How long a scheduled run lasts: the scheduler's period. */
  readonly runMs: number;
  /** `--once --restart`: act on a php-fpm failure even in a single probe. */
  readonly restartOnOnce: boolean;
  /** The configuration file read, or null. */
  readonly configFile: string | null;
  readonly init: InitSystem;
  readonly tools: Tools;
  readonly logFile: string;
  readonly logFormat: "text" | "json";
  readonly stateDir: string;
  /** Where services' locks are (shared by cron runs, watch and reset). */
  readonly lockDir: string;
  readonly mailFrom: string;
  readonly mail: MailRoute;
  /** Every alert is also POSTed here as JSON (Slack-compatible `text`), when set. */
  readonly webhook: URL | null;
  /** A node_exporter textfile written after every run (cron) or every 15 s (watch). */
  readonly metricsFile: string | null;
  /** Watch mode's /metrics endpoint, on loopback only. */
  readonly metricsListen: { readonly hostname: string; readonly port: number } | null;
  readonly verbose: boolean;
  readonly hostname: string;
  /** `reset`: the target to re-arm, or null for all. */
  readonly resetTarget: string | null;
  /** `report`: how far back, and text or JSON. */
  readonly report: { readonly sinceMs: number; readonly format: "text" | "json" };
}

/** Environment variables read for mail settings; flags override them. */
export const ENV = {
  smtpHost: "PHP_RELAUNCH_SMTP_HOST",
  smtpPort: "PHP_RELAUNCH_SMTP_PORT",
  mailFrom: "PHP_RELAUNCH_MAIL_FROM",
  smtpUser: "PHP_RELAUNCH_SMTP_USER",
  /** The SMTP password: from the environment (or a file), never from the command line. */
  smtpPassword: "PHP_RELAUNCH_SMTP_PASSWORD",
  webhook: "PHP_RELAUNCH_WEBHOOK",
} as const;

const YES = new Set(["1", "yes", "true", "on", "y"]);
const NO = new Set(["0", "no", "false", "off", "n", ""]);

/**
 * The ports `fetch` refuses to use (the Fetch standard's "bad ports"): a heartbeat or webhook on
 * one of them can never be reached, so it is refused when the configuration is read.
 */
export const BAD_PORTS: ReadonlySet<number> = new Set([
  1,
  7,
  9,
  11,
  13,
  15,
  17,
  19,
  20,
  21,
  22,
  23,
  25,
  37,
  42,
  43,
  53,
  69,
  77,
  79,
  87,
  95,
  101,
  102,
  103,
  104,
  109,
  110,
  111,
  113,
  115,
  117,
  119,
  123,
  135,
  137,
  139,
  143,
  161,
  179,
  389,
  427,
  465,
  512,
  513,
  514,
  515,
  526,
  530,
  531,
  532,
  540,
  548,
  554,
  556,
  563,
  587,
  601,
  636,
  989,
  990,
  993,
  995,
  1719,
  1720,
  1723,
  2049,
  3659,
  4045,
  5060,
  5061,
  6000,
  6566,
  6665,
  6666,
  6667,
  6668,
  6669,
  6697,
  10080,
]);

/** The longest URL taken; nginx refuses a longer request line anyway. */
export const MAX_URL_LENGTH = 8192;

/** Why `url` (http or https) cannot be fetched, or null. */
function fetchProblem(url: URL): string | null {
  const port = url.port === "" ? null : Number(url.port);
  return port !== null && BAD_PORTS.has(port)
    ? `port ${port} is one that fetch refuses to use (the Fetch standard's "bad ports"): choose another port`
    : null;
}

/** Checks a heartbeat URI; a sentence saying what is wrong, or the URL. */
function checkUrl(value: string, fcgiOnly: boolean): URL | string {
  if (value.length > MAX_URL_LENGTH) {
    return `Cannot use URI "${
      withoutUserinfo(value)
    }": it has ${value.length} characters, at most ${MAX_URL_LENGTH}`;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `Cannot parse URI "${
      withoutUserinfo(value)
    }": expected an http://, https://, fcgi:// or fcgi+unix:// URL`;
  }
  if (url.username !== "" || url.password !== "") {
    // credentials would end up in logs and mails
    return `Cannot use URI "${publicUrl(url)}": credentials in the URI are not supported`;
  }
  if (isFcgiUrl(url)) {
    const target = fcgiTargetOf(url);
    return typeof target === "string" ? `Cannot use URI "${publicUrl(url)}": ${target}` : url;
  }
  if (fcgiOnly) {
    return `Cannot use status URI "${
      publicUrl(url)
    }": expected fcgi://HOST:PORT/PATH or fcgi+unix:///SOCKET.sock/PATH`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `Cannot use URI "${
      publicUrl(url)
    }": expected the scheme http://, https://, fcgi:// or fcgi+unix://`;
  }
  if (url.hostname === "") return `Cannot use URI "${publicUrl(url)}": expected a host name`;
  const problem = fetchProblem(url);
  return problem === null ? url : `Cannot use URI "${publicUrl(url)}": ${problem}`;
}

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
    // a service or process name is passed as one argument to service/pgrep: keep it plain
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

/** Checks a webhook URL without ever echoing its path: a sentence, or the URL. */
function checkWebhook(value: string): URL | string {
  let url: URL;
  try {
    if (value.length > MAX_URL_LENGTH) throw new RangeError("too long");
    url = new URL(value);
  } catch {
    // not shown: a webhook's path is its secret, and a URL that does not parse has no path to cut
    return `Cannot parse the webhook URL (${value.length} characters, not shown: it holds a secret): expected an http:// or https:// URL of at most ${MAX_URL_LENGTH} characters`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `Cannot use webhook URL ${webhookName(url)}: expected http:// or https://`;
  }
  const problem = fetchProblem(url);
  return problem === null ? url : `Cannot use webhook URL ${webhookName(url)}: ${problem}`;
}

const webhookField = transform(v.string(), (value, ctx) => {
  const url = checkWebhook(value);
  return typeof url === "string" ? custom(ctx, url) : url;
});

/** host:port on loopback: the endpoint must not be reachable from the network. */
function parseListen(value: string): { hostname: string; port: number } | string {
  const m = /^(127(?:\.\d{1,3}){3}|localhost|\[::1\]):(\d{1,5})$/.exec(value.trim());
  const port = Number(m?.[2]);
  if (m === null || !(port >= 1 && port <= 65535)) {
    return `Cannot use metrics address "${value}": expected 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (loopback only)`;
  }
  return { hostname: m[1]!.replace(/^\[|\]$/g, ""), port };
}

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
  resetTarget: v.optional(nameField("target")),
});

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_RUN_FOR = "60";
const DEFAULT_SMTP_HOST = "localhost";
const DEFAULT_SMTP_PORT = 25;

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Chooses the service: the override (which must exist), or the only one installed. */
async function chooseService(
  deps: Deps,
  kind: "php-fpm" | "php-cgi",
  override: string | undefined,
  processOverride: string | undefined,
  flag: string,
): Promise<ServiceTarget | string> {
  let service = override;
  if (service === undefined) {
    const found = kind === "php-fpm"
      ? await findFpmServices(deps.fs)
      : await findCgiServices(deps.fs);
    if (found.length === 0) {
      return `Cannot find a ${kind} service in ${
        SERVICE_DIRS.join(", ")
      }: install ${kind} or name it with ${flag}`;
    }
    if (found.length > 1) {
      return `Found several ${kind} services (${
        found.join(", ")
      }): choose the one this heartbeat goes to with ${flag}`;
    }
    service = found[0] ?? "";
  } else if (!(await serviceExists(deps.fs, service))) {
    return `Cannot find service "${service}" in ${
      SERVICE_DIRS.join(", ")
    }: check the name (${flag})`;
  }
  const processName = processOverride ?? processNameFor(service);
  if (processOverride === undefined) {
    const binaries = SEARCH_DIRS.map((dir) => `${dir}/${processName}`);
    const present = await Promise.all(binaries.map((p) => deps.fs.isExecutable(p)));
    if (!present.some(Boolean)) {
      return `Cannot find the ${kind} program "${processName}" of service "${service}" in ${
        SEARCH_DIRS.join(", ")
      }: name its process with ${flag.replace("service", "process-name")}`;
    }
  }
  return { service, processName };
}

function userStateHome(deps: Deps): string | null {
  const state = deps.host.env("XDG_STATE_HOME");
  if (state?.startsWith("/")) return state;
  const home = deps.host.env("HOME");
  return home?.startsWith("/") ? `${home}/.local/state` : null;
}

/**
 * Where locks are. Root's are in a folder only root can write (made 0700 when missing): in the
 * world-writable /run/lock another user could create a lock file first and hold it for good.
 */
async function defaultLockDir(deps: Deps, isRoot: boolean): Promise<string | null> {
  if (isRoot) return deps.host.os() === "freebsd" ? "/var/run/php-relaunch" : "/run/php-relaunch";
  const runtime = deps.host.env("XDG_RUNTIME_DIR");
  if (runtime?.startsWith("/")) return runtime;
  const uid = deps.host.uid();
  const userRun = `/run/user/${uid}`;
  return uid !== null && await deps.fs.exists(userRun) ? userRun : null;
}

/**
 * Why the paths a run writes cannot be used, each a sentence: a symbolic link anywhere in one, a
 * lock or state folder (or lock file) that another user made or can write, a state file that is
 * not a file, a state folder that is not a folder. Checked before anything is created.
 */
async function pathProblems(
  deps: Deps,
  uid: number | null,
  paths: {
    logFile: string | null;
    stateDir: string | null;
    stateFiles: readonly string[];
    lockFiles: readonly string[];
    metricsFile: string | null;
  },
): Promise<string[]> {
  const lstat = deps.fs.info;
  // past the links: a path the permissions hide is refused by the permission check instead
  const seen = (path: string) => lstat(path).catch(() => null);
  const problems: string[] = [];
  const refuse = (what: string, path: string, why: string) =>
    problems.push(`Refusing ${what} "${path}": ${why}`);
  const checkLinks = async (what: string, path: string | null) => {
    const problem = path === null ? null : await linkProblem(lstat, path);
    if (problem !== null) refuse(what, path!, problem);
    return problem === null;
  };
  const checkPrivate = async (what: string, path: string, kind: "folder" | "file") => {
    const info = await seen(path);
    const problem = info === null ? null : privateProblem(info, uid, kind);
    if (problem !== null) refuse(what, path, problem);
    return problem === null;
  };
  const checkKind = async (what: string, path: string, kind: "folder" | "file") => {
    const info = await seen(path);
    if (info !== null && (kind === "folder" ? !info.isDirectory : !info.isFile)) {
      refuse(what, path, `it is not a ${kind === "folder" ? "folder" : "regular file"}`);
    }
  };
  if (await checkLinks("log file", paths.logFile)) {
    await checkKind("log file", paths.logFile!, "file");
  }
  await checkLinks("metrics file", paths.metricsFile);
  const dir = paths.stateDir;
  if (
    dir !== null && await checkLinks("state folder", dir) &&
    await checkPrivate("state folder", dir, "folder")
  ) {
    const inside: [string, string, "folder" | "file"][] = [
      ["incident log", incidentsPath(dir), "file"],
      ["outbox", `${dir}/outbox`, "folder"],
      ...paths.stateFiles.map((f): [string, string, "file"] => ["state file", f, "file"]),
    ];
    for (const [what, path, kind] of inside) {
      if (await checkLinks(what, path)) await checkKind(what, path, kind);
    }
  }
  for (const lock of new Set(paths.lockFiles)) {
    if (!(await checkLinks("lock file", lock))) continue;
    await checkPrivate("lock folder", lock.slice(0, lock.lastIndexOf("/")) || "/", "folder");
    await checkPrivate("lock file", lock, "file");
  }
  return [...new Set(problems)];
}

/**
 * The policy of the original's command line: one timeout restarts, as it did, but a 5xx is
 * confirmed by a second one a second later; at most 3 restarts in 15 minutes.
 */
export function cronPolicy(timeoutMs: number): Policy {
  return {
    failureThreshold: 2,
    timeoutThreshold: 1,
    successThreshold: 1,
    confirmDelayMs: 1000,
    intervalMs: timeoutMs,
    gracePeriodMs: settleMs(timeoutMs),
    maxRestarts: 3,
    restartWindowMs: 15 * 60_000,
    rearmAfterMs: 15 * 60_000,
    reminderMs: 0,
    onOverload: "alert",
  };
}

function policyOf(p: FilePolicy): Policy {
  return {
    failureThreshold: p.failure_threshold,
    timeoutThreshold: p.timeout_threshold,
    successThreshold: p.success_threshold,
    confirmDelayMs: p.confirm_delay,
    intervalMs: p.interval,
    gracePeriodMs: p.grace_period,
    maxRestarts: p.max_restarts,
    restartWindowMs: p.restart_window,
    rearmAfterMs: p.rearm_after,
    reminderMs: p.reminder,
    onOverload: p.on_overload,
  };
}

/** Where the usual packages keep php-fpm's pid file (Debian, RHEL, FreeBSD). */
export function defaultPidFile(service: string): string | null {
  if (/^php\d+(\.\d+)?-fpm$/.test(service)) return `/run/php/${service}.pid`;
  if (service === "php-fpm") return "/run/php-fpm/php-fpm.pid";
  if (service === "php_fpm") return "/var/run/php-fpm.pid";
  return null;
}

/** A target as written, before its service is resolved. */
interface TargetSpec {
  name: string | null;
  url: URL;
  policy: Policy;
  timeoutMs: number;
  rungs: Rung[];
  startTimeoutMs: number;
  mailTo: string[];
  cgi: boolean;
  service?: string | undefined;
  processName?: string | undefined;
  cgiService?: string | undefined;
  cgiProcessName?: string | undefined;
  pidFile?: string | undefined;
  status: URL | null;
  fpmConfig?: string | undefined;
  expect?: string | undefined;
  extra: FilePolicy;
}

/** The FastCGI side of a target: the probe's and the status page's addresses. */
function fcgiSettings(spec: TargetSpec) {
  const fcgi = isFcgiUrl(spec.url) ? fcgiTargetOf(spec.url) : null;
  const status = spec.status === null ? null : fcgiTargetOf(spec.status);
  // both were checked by checkUrl: a string here cannot happen
  const probe = typeof fcgi === "string" ? null : fcgi;
  const page = typeof status === "string" ? null : status;
  return {
    fcgi: probe,
    expect: spec.expect ?? (probe === null ? "" : "pong"),
    status: page,
    statusOnPool: probe !== null && page !== null &&
      describeFcgiTarget(probe) === describeFcgiTarget(page),
  };
}

/** Where the shipped permissions let php-relaunch write, for error messages. */
const WRITABLE = "/var/lib/php-relaunch, /var/db/php-relaunch, /var/log, /run, /var/run, " +
  "/var/lock, /var/lib/prometheus";

/** Where sendmail may be: the run permission names exactly these. */
export const SENDMAIL_PATHS = [
  "/usr/sbin/sendmail",
  "/usr/lib/sendmail",
  "/usr/bin/sendmail",
  "/usr/local/sbin/sendmail",
] as const;
const DEFAULT_SENDMAIL = "/usr/sbin/sendmail";

/**
 * Reads the SMTP password file, which must be a regular file that only its owner (root, when
 * running as root) can read: a password readable by others is refused, not used.
 */
async function readPasswordFile(path: string, deps: Deps, isRoot: boolean): Promise<string> {
  if (!deps.host.allows("read", path)) {
    throw new Error(
      `Cannot read SMTP password file "${path}": php-relaunch's permissions do not let it read there; keep it in /etc/php-relaunch`,
    );
  }
  const info = await deps.fs.info(path);
  if (info === null) throw new Error(`Cannot read SMTP password file "${path}": it does not exist`);
  if (!info.isFile) {
    throw new Error(`Refusing SMTP password file "${path}": it is not a regular file`);
  }
  if ((info.mode & 0o077) !== 0) {
    throw new Error(
      `Refusing SMTP password file "${path}": mode ${
        info.mode.toString(8).padStart(4, "0")
      } lets others read it; chmod 600 it`,
    );
  }
  if (isRoot && info.uid !== 0) {
    throw new Error(`Refusing SMTP password file "${path}": it is not owned by root`);
  }
  const text = await deps.fs.readTextFile(path, 4096);
  return text.replace(/\r?\n$/, "");
}

/** The mail route from flags, environment and file; a sentence when it cannot be built. */
async function mailRouteOf(
  s: v.InferOutput<typeof settingsSchema>,
  file: ConfigFile | null,
  deps: Deps,
  isRoot: boolean,
): Promise<MailRoute | string> {
  const m = file?.mail ?? {};
  const transport = s.mailTransport ?? m.transport ?? "smtp";
  if (transport === "sendmail") {
    const path = m.sendmail ?? DEFAULT_SENDMAIL;
    if (!SENDMAIL_PATHS.some((p) => p === path)) {
      return `Cannot use sendmail "${path}": expected one of ${SENDMAIL_PATHS.join(", ")}`;
    }
    if (!(await deps.fs.isExecutable(path))) {
      return `Cannot find sendmail at "${path}": install a mail transfer agent (msmtp-mta, postfix) or use SMTP`;
    }
    return { transport, path };
  }
  const user = s.smtpUser ?? m.user ?? null;
  let password = deps.host.env(ENV.smtpPassword) ?? null;
  const passwordFile = s.smtpPasswordFile ?? m.password_file;
  if (passwordFile !== undefined) {
    try {
      password = await readPasswordFile(passwordFile, deps, isRoot);
    } catch (err) {
      return describeError(err);
    }
  }
  if (password !== null && user === null) {
    return "Cannot use an SMTP password without a user: give --smtp-user or [mail] user";
  }
  return {
    transport,
    host: s.smtpHost ?? m.smtp_host ?? DEFAULT_SMTP_HOST,
    port: s.smtpPort ?? m.smtp_port ?? DEFAULT_SMTP_PORT,
    tls: s.smtpTls ?? m.tls ?? "auto",
    user,
    password,
    caFile: m.ca_file ?? null,
  };
}

/** The largest configuration file read: a few targets take a few KiB. */
export const MAX_CONFIG_FILE = 1024 * 1024;

async function readConfigFile(
  path: string,
  deps: Deps,
): Promise<ConfigFile | string[]> {
  let text: string;
  try {
    text = await deps.fs.readTextFile(path, MAX_CONFIG_FILE);
  } catch (err) {
    return [`Cannot read config file "${path}": ${describeError(err)}`];
  }
  return parseConfigFile(path, text);
}

/**
 * Validates `raw` (flags already merged with positionals) against the configuration file and the
 * environment: URLs, timeouts, addresses, services and tools, log, lock and state paths.
 * @throws {ConfigError} listing every problem found.
 */
export async function loadConfig(mode: Mode, raw: RawSettings, deps: Deps): Promise<Config> {
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
      smtpHost: raw.smtpHost ?? deps.host.env(ENV.smtpHost),
      smtpPort: raw.smtpPort ?? deps.host.env(ENV.smtpPort),
      mailFrom: raw.mailFrom ?? deps.host.env(ENV.mailFrom),
      resetTarget: raw.resetTarget,
      statusUrl: raw.statusUrl,
      expect: raw.expect,
      since: raw.since,
      format: raw.format,
      mailTransport: raw.mailTransport,
      smtpTls: raw.smtpTls,
      smtpUser: raw.smtpUser ?? deps.host.env(ENV.smtpUser),
      smtpPasswordFile: raw.smtpPasswordFile,
      webhook: raw.webhook ?? deps.host.env(ENV.webhook),
      metricsFile: raw.metricsFile,
      metricsListen: raw.metricsListen,
    }),
  });
  if (!parsed.success) {
    issues.push(...parsed.issues.map((i) => i.message));
    throw new ConfigError(issues);
  }
  const s = parsed.output;

  // the file: named with --config; watch and reset also read the default one
  // reset and report work without a file too (on the state folder alone)
  const fileOptional = mode === "reset" || mode === "report";
  const wantsFile = s.config !== undefined ||
    ((mode === "watch" || fileOptional) && s.url === undefined);
  const configPath = wantsFile ? s.config ?? defaultConfigFile(deps.host.os()) : null;
  let file: ConfigFile | null = null;
  if (configPath !== null) {
    const read = await readConfigFile(configPath, deps);
    if (Array.isArray(read)) {
      if (!fileOptional || s.config !== undefined) issues.push(...read);
    } else file = read;
  }
  if (s.url === undefined && configPath === null && !fileOptional) {
    issues.push("Missing the heartbeat URI: give it as the first argument or with --url");
  }
  const timeoutMs = s.timeout ?? DEFAULT_TIMEOUT_MS;
  if (s.runFor < timeoutMs) {
    issues.push(
      `Cannot run for ${s.runFor / 1000} s with a timeout of ${
        timeoutMs / 1000
      } s: a run must fit at least one probe`,
    );
  }
  if (issues.length > 0) throw new ConfigError(issues);

  // what the file's [defaults] do not say, watch mode's defaults do
  const defaults: FilePolicy = { ...WATCH_DEFAULTS, ...file?.defaults };
  const specs: TargetSpec[] = [];
  if (s.url !== undefined) {
    const cron = mode !== "watch";
    const interval = s.interval ?? (cron ? timeoutMs : defaults.interval);
    specs.push({
      name: null,
      url: s.url,
      timeoutMs,
      policy: cron
        ? cronPolicy(timeoutMs)
        : policyOf({ ...defaults, timeout: timeoutMs, interval }),
      rungs: cron ? ["kill"] : defaults.rungs,
      startTimeoutMs: defaults.start_timeout,
      mailTo: s.mailTo ?? defaults.mail_to,
      cgi: s.restartCgi ?? false,
      service: s.service,
      processName: s.processName,
      cgiService: s.cgiService,
      cgiProcessName: s.cgiProcessName,
      status: s.statusUrl ?? null,
      expect: s.expect,
      extra: defaults,
    });
  } else if (file !== null) {
    for (const t of file.target) {
      const p: FilePolicy = { ...defaults, ...stripUndefined(t) };
      const where = `${configPath}: target "${t.name}": `;
      const url = checkUrl(t.url, false);
      const status = t.status_url === undefined ? null : checkUrl(t.status_url, true);
      if (typeof url === "string" || typeof status === "string") {
        for (const bad of [url, status]) if (typeof bad === "string") issues.push(where + bad);
        continue;
      }
      specs.push({
        name: t.name,
        url,
        timeoutMs: s.timeout ?? p.timeout,
        policy: policyOf({ ...p, interval: s.interval ?? p.interval }),
        rungs: p.rungs,
        startTimeoutMs: p.start_timeout,
        mailTo: s.mailTo ?? p.mail_to,
        cgi: s.restartCgi ?? p.php_cgi,
        service: s.service ?? t.service,
        processName: s.processName ?? t.process_name,
        cgiService: s.cgiService ?? t.cgi_service,
        cgiProcessName: s.cgiProcessName ?? t.cgi_process_name,
        pidFile: t.pid_file,
        status: s.statusUrl ?? status,
        fpmConfig: t.fpm_config,
        expect: s.expect ?? t.expect,
        extra: p,
      });
    }
  }

  const init = s.init ?? file?.init ?? await detectInit(deps.fs, deps.host);
  const { tools, missing } = await findTools(deps.fs, init);
  for (const name of missing) {
    issues.push(
      `Cannot find "${name}" in ${
        SEARCH_DIRS.join(", ")
      }: install it (procps, init-system-helpers)`,
    );
  }

  const uid = deps.host.uid();
  const isRoot = uid === 0;
  const stateHome = userStateHome(deps);
  const logFile = s.logFile ?? file?.log.file ??
    (isRoot ? "/var/log/php-relaunch.log" : stateHome && `${stateHome}/php-relaunch.log`);
  if (!logFile) issues.push("Cannot choose a log file: set HOME or give --log-file");
  const stateDir = s.stateDir ?? file?.state.dir ??
    (isRoot
      ? deps.host.os() === "freebsd" ? "/var/db/php-relaunch" : "/var/lib/php-relaunch"
      : stateHome && `${stateHome}/php-relaunch`);
  if (!stateDir) issues.push("Cannot choose a state folder: set HOME or give --state-dir");
  const lockDir = file?.state.lock_dir ?? await defaultLockDir(deps, isRoot);
  if (s.lockFile === undefined && lockDir === null) {
    issues.push("Cannot choose a lock file: set XDG_RUNTIME_DIR or give --lock-file");
  }
  if (s.lockFile !== undefined && specs.length > 1) {
    issues.push("Cannot use one --lock-file for several targets: each has its own lock");
  }

  const targets: Target[] = [];
  for (const spec of specs) {
    const where = spec.name === null ? "" : `target "${spec.name}": `;
    const fpm = await chooseService(deps, "php-fpm", spec.service, spec.processName, "--service");
    if (typeof fpm === "string") {
      issues.push(where + fpm);
      continue;
    }
    let cgi: ServiceTarget | null = null;
    if (spec.cgi) {
      const found = await chooseService(
        deps,
        "php-cgi",
        spec.cgiService,
        spec.cgiProcessName,
        "--cgi-service",
      );
      if (typeof found === "string") {
        issues.push(where + found);
        continue;
      }
      cgi = found;
    }
    const name = spec.name ?? fpm.service;
    targets.push(Object.freeze({
      name,
      url: spec.url,
      timeoutMs: spec.timeoutMs,
      policy: Object.freeze(spec.policy),
      rungs: Object.freeze([...spec.rungs]),
      startTimeoutMs: spec.startTimeoutMs,
      fpm: Object.freeze(fpm),
      cgi: cgi && Object.freeze(cgi),
      pidFile: spec.pidFile ?? defaultPidFile(fpm.service),
      mailTo: Object.freeze([...spec.mailTo]),
      // one lock per service: two crontab lines for two PHP versions do not block each other
      lockFile: s.lockFile ?? `${lockDir}/php-relaunch-${fpm.service}.lock`,
      stateFile: statePath(stateDir ?? "", name),
      ...fcgiSettings(spec),
      fpmConfig: spec.fpmConfig ?? defaultFpmConfig(fpm.service),
      stuckAfterMs: spec.extra.stuck_after || spec.timeoutMs,
      warn: Object.freeze({
        listenQueue: spec.extra.warn_listen_queue,
        slowRequests: spec.extra.warn_slow_requests,
        maxChildren: spec.extra.warn_max_children,
      }),
      warnEveryMs: spec.extra.warn_every,
    }));
  }
  const byService = new Map<string, string>();
  for (const t of targets) {
    const other = byService.get(t.fpm.service);
    if (other !== undefined) {
      issues.push(
        `Targets "${other}" and "${t.name}" both restart ${t.fpm.service}: one target per service`,
      );
    }
    byService.set(t.fpm.service, t.name);
  }
  if (issues.length > 0) throw new ConfigError(issues);

  // the compiled binary's permissions name the folders it may use: say so before anything runs
  const paths: [string, "read" | "write", string | null | undefined][] = [
    ["log file", "write", logFile],
    ["state folder", "write", stateDir],
    ["lock file", "write", s.lockFile ?? (lockDir && `${lockDir}/php-relaunch.lock`)],
    ["metrics file", "write", s.metricsFile ?? file?.metrics.file],
    ["CA file", "read", file?.mail.ca_file],
  ];
  for (const [what, access, path] of paths) {
    if (path && !deps.host.allows(access, path)) {
      issues.push(
        `Cannot use ${what} "${path}": php-relaunch's permissions do not let it ${access} there (${
          access === "write" ? WRITABLE : "see README, Permissions"
        }); choose a path there, or run from source with wider permissions`,
      );
    }
  }
  // report only reads; every other mode writes (check-config says what they would refuse)
  if (mode !== "report") {
    issues.push(
      ...await pathProblems(deps, uid, {
        logFile: logFile ?? null,
        stateDir: stateDir ?? null,
        stateFiles: targets.map((t) => t.stateFile),
        lockFiles: targets.map((t) => t.lockFile),
        metricsFile: s.metricsFile ?? file?.metrics.file ?? null,
      }),
    );
  }
  const mail = await mailRouteOf(s, file, deps, isRoot);
  if (typeof mail === "string") issues.push(mail);
  let webhook = s.webhook ?? null;
  if (webhook === null && file?.webhook.url !== undefined) {
    const url = checkWebhook(file.webhook.url);
    if (typeof url === "string") issues.push(`${configPath}: webhook.url: ${url}`);
    else webhook = url;
  }
  let metricsListen = s.metricsListen ?? null;
  if (metricsListen === null && file?.metrics.listen !== undefined) {
    const listen = parseListen(file.metrics.listen);
    if (typeof listen === "string") issues.push(`${configPath}: metrics.listen: ${listen}`);
    else metricsListen = listen;
  }
  // check-config shows a watch configuration; the cron form has no process to serve from
  if (metricsListen !== null && mode !== "watch" && mode !== "check") {
    issues.push("Cannot serve /metrics outside watch mode: use --metrics-file with cron");
  }
  if (issues.length > 0) throw new ConfigError(issues);

  const hostname = deps.host.hostname();
  return Object.freeze({
    mode,
    targets: Object.freeze(targets),
    runMs: s.runFor,
    restartOnOnce: raw.restart === true,
    configFile: file === null ? null : configPath,
    init,
    tools: Object.freeze(tools),
    logFile: logFile ?? "",
    logFormat: s.logFormat ?? file?.log.format ?? "text",
    stateDir: stateDir ?? "",
    lockDir: lockDir ?? "",
    mailFrom: s.mailFrom ?? file?.mail.from ?? `php-relaunch@${hostname}`,
    mail: Object.freeze(mail as MailRoute),
    webhook,
    metricsFile: s.metricsFile ?? file?.metrics.file ?? null,
    metricsListen: metricsListen && Object.freeze(metricsListen),
    verbose: raw.verbose === true,
    hostname,
    resetTarget: s.resetTarget ?? null,
    report: Object.freeze({ sinceMs: s.since ?? 7 * 86_400_000, format: s.format ?? "text" }),
  });
}
