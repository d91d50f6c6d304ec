/**
 * Turns the command line and environment into a validated, frozen {@link Config}. The only place
 * that validates: every problem is collected into one {@link ConfigError}.
 */
import { z } from "zod";
import type { Deps, SmtpSettings } from "./deps.ts";
import { ConfigError } from "./errors.ts";
import type { Policy } from "./policy.ts";
import { settleMs } from "./schedule.ts";
import { statePath } from "./state.ts";
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
  /** Watch for one minute, restarting on failure (the cron form). */
  | "minute"
  /** One probe; the exit code is the verdict. */
  | "once"
  /** Validate and print the resolved settings. */
  | "check";

/** The settings as the command line gave them, before validation (all strings). */
export interface RawSettings {
  url?: string | undefined;
  timeout?: string | undefined;
  runFor?: string | undefined;
  mailTo?: string | undefined;
  restartCgi?: string | boolean | undefined;
  service?: string | undefined;
  processName?: string | undefined;
  cgiService?: string | undefined;
  cgiProcessName?: string | undefined;
  restart?: boolean | undefined;
  logFile?: string | undefined;
  lockFile?: string | undefined;
  stateDir?: string | undefined;
  init?: string | undefined;
  smtpHost?: string | undefined;
  smtpPort?: string | undefined;
  mailFrom?: string | undefined;
  verbose?: boolean | undefined;
}

/** Everything a run needs, validated. */
export interface Config {
  readonly mode: Mode;
  readonly url: URL;
  readonly timeoutMs: number;
  /** How long a scheduled run lasts: the scheduler's period. */
  readonly runMs: number;
  readonly mailTo: readonly string[];
  readonly mailFrom: string;
  readonly smtp: SmtpSettings;
  /** `--once --restart`: restart on a php-fpm failure even in a single probe. */
  readonly restartOnOnce: boolean;
  readonly init: InitSystem;
  readonly tools: Tools;
  readonly fpm: ServiceTarget;
  /** Set when php-cgi is relaunched too (the original's 4th argument). */
  readonly cgi: ServiceTarget | null;
  readonly logFile: string;
  readonly lockFile: string;
  /** Where the policy's memory is kept between runs. */
  readonly stateFile: string;
  readonly policy: Policy;
  readonly verbose: boolean;
  readonly hostname: string;
}

/** Environment variables read for mail settings; flags override them. */
export const ENV = {
  smtpHost: "PHP_RELAUNCH_SMTP_HOST",
  smtpPort: "PHP_RELAUNCH_SMTP_PORT",
  mailFrom: "PHP_RELAUNCH_MAIL_FROM",
} as const;

const email = z.email({ pattern: z.regexes.html5Email });

const YES = new Set(["1", "yes", "true", "on", "y"]);
const NO = new Set(["0", "no", "false", "off", "n", ""]);

function custom(ctx: z.RefinementCtx, message: string): typeof z.NEVER {
  ctx.addIssue({ code: "custom", message });
  return z.NEVER;
}

const urlField = z.string().transform((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return custom(ctx, `Cannot parse URI "${value}": expected an http:// or https:// URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return custom(ctx, `Cannot use URI "${value}": expected the scheme http:// or https://`);
  }
  if (url.hostname === "") {
    return custom(ctx, `Cannot use URI "${value}": expected a host name`);
  }
  if (url.username !== "" || url.password !== "") {
    // credentials would end up in logs and mails
    return custom(ctx, `Cannot use URI "${value}": credentials in the URI are not supported`);
  }
  return url;
});

const timeoutField = z.string().transform((value, ctx) => {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 60) {
    return custom(
      ctx,
      `Cannot parse timeout "${value}": expected a whole number of seconds from 1 to 60`,
    );
  }
  return n * 1000;
});

const runForField = z.string().transform((value, ctx) => {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 3600) {
    return custom(
      ctx,
      `Cannot parse run-for "${value}": expected the scheduler's period in whole seconds, 1 to 3600`,
    );
  }
  return n * 1000;
});

const mailToField = z.string().transform((value, ctx) => {
  const addresses = value.split(",").map((a) => a.trim()).filter((a) => a !== "");
  const bad = addresses.filter((a) => !email.safeParse(a).success);
  if (bad.length > 0) {
    return custom(
      ctx,
      `Cannot use email address "${
        bad[0]
      }": expected user@host, several separated by commas, or '' for none`,
    );
  }
  return [...new Set(addresses)];
});

const restartCgiField = z.union([z.boolean(), z.string()]).transform((value, ctx) => {
  if (typeof value === "boolean") return value;
  const v = value.trim().toLowerCase();
  if (YES.has(v)) return true;
  if (NO.has(v)) return false;
  return custom(
    ctx,
    `Cannot parse restart-cgi "${value}": expected 1 (also restart php-cgi) or 0 (do not)`,
  );
});

const portField = (name: string) =>
  z.string().transform((value, ctx) => {
    const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      return custom(ctx, `Cannot parse ${name} "${value}": expected a port number from 1 to 65535`);
    }
    return n;
  });

const nameField = (name: string) =>
  z.string().transform((value, ctx) => {
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
  z.string().transform((value, ctx) => {
    if (!value.startsWith("/")) {
      return custom(ctx, `Cannot use ${name} "${value}": expected an absolute path`);
    }
    return value;
  });

const hostField = z.string().transform((value, ctx) => {
  if (!/^[A-Za-z0-9.:[\]-]+$/.test(value)) {
    return custom(ctx, `Cannot use SMTP host "${value}": expected a host name or address`);
  }
  return value;
});

const fromField = z.string().transform((value, ctx) => {
  if (!email.safeParse(value).success) {
    return custom(ctx, `Cannot use sender "${value}": expected user@host`);
  }
  return value;
});

const initField = z.string().transform((value, ctx) => {
  const init = INIT_SYSTEMS.find((i) => i === value);
  if (init === undefined) {
    return custom(
      ctx,
      `Cannot use init system "${value}": expected one of ${INIT_SYSTEMS.join(", ")}`,
    );
  }
  return init;
});

const settingsSchema = z.object({
  url: urlField,
  timeout: timeoutField,
  runFor: runForField,
  mailTo: mailToField,
  restartCgi: restartCgiField,
  service: nameField("service").optional(),
  processName: nameField("process name").optional(),
  cgiService: nameField("php-cgi service").optional(),
  cgiProcessName: nameField("php-cgi process name").optional(),
  logFile: pathField("log file").optional(),
  lockFile: pathField("lock file").optional(),
  stateDir: pathField("state folder").optional(),
  init: initField.optional(),
  smtpHost: hostField,
  smtpPort: portField("SMTP port"),
  mailFrom: fromField.optional(),
});

/** Defaults that apply whatever the form of the command line. */
const DEFAULT_TIMEOUT = "5";
const DEFAULT_RUN_FOR = "60";
const DEFAULT_SMTP_HOST = "localhost";
const DEFAULT_SMTP_PORT = "25";

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Chooses the service: the override, or the only one installed. */
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
      }: name its process with ${flag === "--service" ? "--process-name" : "--cgi-process-name"}`;
    }
  }
  return { service, processName };
}

function defaultStateDir(deps: Deps, isRoot: boolean): string | null {
  if (isRoot) return "/var/lib/php-relaunch";
  const state = deps.host.env("XDG_STATE_HOME");
  if (state?.startsWith("/")) return `${state}/php-relaunch`;
  const home = deps.host.env("HOME");
  if (home?.startsWith("/")) return `${home}/.local/state/php-relaunch`;
  return null;
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
  };
}

function defaultLogFile(deps: Deps, isRoot: boolean): string | null {
  if (isRoot) return "/var/log/php-relaunch.log";
  const state = deps.host.env("XDG_STATE_HOME");
  if (state?.startsWith("/")) return `${state}/php-relaunch.log`;
  const home = deps.host.env("HOME");
  if (home?.startsWith("/")) return `${home}/.local/state/php-relaunch.log`;
  return null;
}

async function defaultLockDir(deps: Deps, isRoot: boolean): Promise<string | null> {
  if (isRoot) {
    for (const dir of ["/run/lock", "/var/lock"]) {
      if (await deps.fs.exists(dir)) return dir;
    }
    return null;
  }
  const runtime = deps.host.env("XDG_RUNTIME_DIR");
  if (runtime?.startsWith("/")) return runtime;
  const uid = deps.host.uid();
  const userRun = `/run/user/${uid}`;
  return uid !== null && await deps.fs.exists(userRun) ? userRun : null;
}

/**
 * Validates `raw` (flags already merged with positionals) against the environment: URL, timeout,
 * addresses, the php-fpm service and tools, log and lock paths.
 * @throws {ConfigError} listing every problem found.
 */
export async function loadConfig(mode: Mode, raw: RawSettings, deps: Deps): Promise<Config> {
  const issues: string[] = [];
  if (raw.url === undefined) {
    issues.push("Missing the heartbeat URI: give it as the first argument or with --url");
  }
  if (raw.restart && mode !== "once") {
    issues.push("Cannot use --restart without --once: a normal run restarts php-fpm anyway");
  }
  const parsed = settingsSchema.safeParse({
    url: raw.url ?? "http://missing.invalid/",
    timeout: raw.timeout ?? DEFAULT_TIMEOUT,
    runFor: raw.runFor ?? DEFAULT_RUN_FOR,
    mailTo: raw.mailTo ?? "",
    restartCgi: raw.restartCgi ?? false,
    smtpHost: raw.smtpHost ?? deps.host.env(ENV.smtpHost) ?? DEFAULT_SMTP_HOST,
    smtpPort: raw.smtpPort ?? deps.host.env(ENV.smtpPort) ?? DEFAULT_SMTP_PORT,
    ...stripUndefined({
      service: raw.service,
      processName: raw.processName,
      cgiService: raw.cgiService,
      cgiProcessName: raw.cgiProcessName,
      logFile: raw.logFile,
      lockFile: raw.lockFile,
      stateDir: raw.stateDir,
      init: raw.init,
      mailFrom: raw.mailFrom ?? deps.host.env(ENV.mailFrom),
    }),
  });
  if (!parsed.success) {
    issues.push(...parsed.error.issues.map((i) => i.message));
    throw new ConfigError(issues);
  }
  const s = parsed.data;
  if (s.runFor < s.timeout) {
    issues.push(
      `Cannot run for ${s.runFor / 1000} s with a timeout of ${
        s.timeout / 1000
      } s: a run must fit at least one probe`,
    );
  }
  if (issues.length > 0) throw new ConfigError(issues);

  const init = s.init ?? await detectInit(deps.fs, deps.host);
  const { tools, missing } = await findTools(deps.fs, init);
  for (const name of missing) {
    issues.push(
      `Cannot find "${name}" in ${
        SEARCH_DIRS.join(", ")
      }: install it (procps, init-system-helpers)`,
    );
  }
  const fpm = await chooseService(deps, "php-fpm", s.service, s.processName, "--service");
  if (typeof fpm === "string") issues.push(fpm);
  let cgi: ServiceTarget | string | null = null;
  if (s.restartCgi) {
    cgi = await chooseService(deps, "php-cgi", s.cgiService, s.cgiProcessName, "--cgi-service");
    if (typeof cgi === "string") issues.push(cgi);
  }

  const uid = deps.host.uid();
  const isRoot = uid === 0;
  const logFile = s.logFile ?? defaultLogFile(deps, isRoot);
  if (logFile === null) issues.push("Cannot choose a log file: set HOME or give --log-file");
  const lockDir = s.lockFile === undefined ? await defaultLockDir(deps, isRoot) : null;
  if (s.lockFile === undefined && lockDir === null) {
    issues.push("Cannot choose a lock file: set XDG_RUNTIME_DIR or give --lock-file");
  }
  const stateDir = s.stateDir ?? defaultStateDir(deps, isRoot);
  if (stateDir === null) issues.push("Cannot choose a state folder: set HOME or give --state-dir");

  if (issues.length > 0 || typeof fpm === "string" || typeof cgi === "string") {
    throw new ConfigError(issues);
  }
  const hostname = deps.host.hostname();
  return Object.freeze({
    mode,
    url: s.url,
    timeoutMs: s.timeout,
    runMs: s.runFor,
    mailTo: Object.freeze(s.mailTo),
    mailFrom: s.mailFrom ?? `php-relaunch@${hostname}`,
    smtp: Object.freeze({ host: s.smtpHost, port: s.smtpPort }),
    restartOnOnce: raw.restart === true,
    init,
    tools: Object.freeze(tools),
    fpm: Object.freeze(fpm),
    cgi: cgi === null ? null : Object.freeze(cgi),
    logFile: logFile ?? "",
    // one lock per service: two crontab lines for two PHP versions do not block each other
    lockFile: s.lockFile ?? `${lockDir}/php-relaunch-${fpm.service}.lock`,
    stateFile: statePath(stateDir ?? "", fpm.service),
    policy: Object.freeze(cronPolicy(s.timeout)),
    verbose: raw.verbose === true,
    hostname,
  });
}
