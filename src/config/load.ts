/**
 * Loading the configuration: a short pipeline of named steps, each collecting every problem it
 * finds into one {@link ConfigError}. Parse the command line → read the file → merge into target
 * settings (the original's positional form is a one-target file) → discover the environment
 * (init system, tools, services) → check paths and permissions → freeze.
 */
import { detectInit, findTools, type InitSystem, SEARCH_DIRS, type Tools } from "../act/service.ts";
import type { ServiceTarget } from "../act/service.ts";
import { defaultPidFile, fpmConfigOf } from "../fpm/config.ts";
import { discoverFpm } from "../fpm/discovery.ts";
import { discoveryToml } from "./discovered.ts";
import { describeFcgiTarget, fcgiTargetOf, isFcgiUrl } from "../probe/fcgi.ts";
import type { Deps, MailRoute } from "../shared/deps.ts";
import { ConfigError, describeError } from "../shared/errors.ts";
import { chooseService, defaultLockDir, userStateHome } from "./environment.ts";
import { parseSettings, type Settings } from "./fields.ts";
import { checkWebhook, parseListen } from "./urls.ts";
import { type ConfigFile, defaultConfigFile, parseConfigFile } from "./file.ts";
import { mailRouteOf, readPasswordFile } from "./mail_settings.ts";
import { balancerSettings } from "./balancer_settings.ts";
import { deadmanOf } from "./deadman_settings.ts";
import { DEFAULT_TIMEOUT_MS, type TargetSpec, targetSpecs } from "./targets.ts";
import { pathProblems, permissionProblems } from "./paths.ts";
import { fleetSettingsOf } from "./fleet_settings.ts";
import {
  type Config,
  ENV,
  lockPath,
  type Mode,
  type RawSettings,
  statePath,
  type Target,
} from "./settings.ts";

/** The largest configuration file read: a few targets take a few KiB. */
export const MAX_CONFIG_FILE = 1024 * 1024;

/** Problems found so far; a step that cannot go on without its input throws them all. */
class Issues {
  readonly list: string[] = [];
  add(...issues: string[]): void {
    this.list.push(...issues);
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new ConfigError(this.list);
  }
}

/**
 * Validates `raw` (flags already merged with positionals) against the configuration file and the
 * environment: URLs, timeouts, addresses, services and tools, log, lock and state paths.
 * @throws {ConfigError} listing every problem found.
 */
export async function loadConfig(mode: Mode, raw: RawSettings, deps: Deps): Promise<Config> {
  const { settings: s, problems } = parseSettings(mode, raw, deps.host);
  const issues = new Issues();
  issues.add(...problems);
  const { path: configPath, file, discovered } = await readFileStep(mode, s, deps, issues);
  issues.throwIfAny();
  const specs = targetSpecs(mode, s, file, configPath, issues);
  const place = await discoverEnvironment(deps, s, file, specs.length, issues);
  const targets = await resolveTargets(deps, s, specs, place, issues);
  issues.throwIfAny();
  await checkPaths(mode, deps, s, file, place, targets, issues);
  const extras = await channelsAndEndpoints(mode, deps, s, file, configPath, place.isRoot, issues);
  const names = targets.map((t) => t.name);
  const balancer = balancerSettings(mode, file?.balancer, configPath, names);
  if (Array.isArray(balancer)) issues.add(...balancer);
  const deadman = deadmanOf(raw.deadmanUrl ?? deps.host.env(ENV.deadmanUrl), file, configPath);
  if (Array.isArray(deadman)) issues.add(...deadman);
  issues.throwIfAny();
  const cfg = freeze(mode, raw, deps, s, file, configPath, place, targets, {
    ...extras,
    discovered,
    deadman: Array.isArray(deadman) ? null : deadman,
  });
  return balancer === null || Array.isArray(balancer) ? cfg : Object.freeze({ ...cfg, balancer });
}

/** The configuration file, when this mode and the flags want one. */
async function readFileStep(
  mode: Mode,
  s: Settings,
  deps: Deps,
  issues: Issues,
): Promise<{ path: string | null; file: ConfigFile | null; discovered: string | null }> {
  // named with --config; watch and the commands on targets also read the default one, and the
  // commands work without it (on the state folder alone)
  const fileOptional = mode === "reset" || mode === "report" || mode === "status" ||
    mode === "pause" || mode === "resume" || s.auto === true;
  const wantsFile = s.config !== undefined ||
    ((mode === "watch" || fileOptional) && s.url === undefined);
  const path = wantsFile ? s.config ?? defaultConfigFile(deps.host.os()) : null;
  let file: ConfigFile | null = null;
  if (path !== null) {
    const read = await readConfigFile(path, deps);
    if (Array.isArray(read)) {
      if (!fileOptional || s.config !== undefined) issues.add(...read);
    } else file = read;
  }
  let discovered: string | null = null;
  if (s.auto === true || file?.auto === true) {
    const found = await discoverTargets(deps, issues);
    discovered = found?.text ?? null;
    if (found !== null) file = { ...(file ?? found.file), target: found.file.target };
  }
  if (s.url === undefined && path === null && !fileOptional) {
    issues.add("Missing the heartbeat URI: give it as the first argument or with --url");
  }
  const timeoutMs = s.timeout ?? DEFAULT_TIMEOUT_MS;
  if (s.runFor < timeoutMs) {
    issues.add(
      `Cannot run for ${s.runFor / 1000} s with a timeout of ${
        timeoutMs / 1000
      } s: a run must fit at least one probe`,
    );
  }
  return { path, file, discovered };
}

/** A title that does not change between discoveries, so that a change of pools shows. */
const DISCOVERED = "discovered by php-relaunch watch --auto";

/** The targets `discover` finds, as a configuration file, and its text. */
async function discoverTargets(
  deps: Deps,
  issues: Issues,
): Promise<{ file: ConfigFile; text: string } | null> {
  const found = await discoverFpm(deps.fs);
  if (found.length === 0) {
    issues.add(
      "--auto: no php-fpm service found to watch (php-relaunch discover shows what is seen)",
    );
    return null;
  }
  const text = discoveryToml(found, DISCOVERED);
  const file = parseConfigFile("(discovered)", text);
  if (Array.isArray(file)) {
    issues.add(...file);
    return null;
  }
  return { file, text };
}

/** The configuration discovery would write now, for watch mode to tell a change of pools. */
export async function rediscover(deps: Deps): Promise<string> {
  return discoveryToml(await discoverFpm(deps.fs), DISCOVERED);
}

async function readConfigFile(path: string, deps: Deps): Promise<ConfigFile | string[]> {
  let text: string;
  try {
    text = await deps.fs.readTextFile(path, MAX_CONFIG_FILE);
  } catch (err) {
    return [`Cannot read config file "${path}": ${describeError(err)}`];
  }
  return parseConfigFile(path, text);
}

/** Where a run lives on this host: its init system and tools, and its files' folders. */
interface Place {
  init: InitSystem;
  tools: Tools;
  uid: number | null;
  isRoot: boolean;
  logFile: string | null;
  stateDir: string | null;
  lockDir: string | null;
}

/** Step 4: the init system, its tools, and the default log, state and lock places. */
async function discoverEnvironment(
  deps: Deps,
  s: Settings,
  file: ConfigFile | null,
  targetCount: number,
  issues: Issues,
): Promise<Place> {
  const init = s.init ?? file?.init ?? await detectInit(deps.fs, deps.host);
  const { tools, missing } = await findTools(deps.fs, init);
  for (const name of missing) {
    issues.add(
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
  if (!logFile) issues.add("Cannot choose a log file: set HOME or give --log-file");
  const stateDir = s.stateDir ?? file?.state.dir ??
    (isRoot
      ? deps.host.os() === "freebsd" ? "/var/db/php-relaunch" : "/var/lib/php-relaunch"
      : stateHome && `${stateHome}/php-relaunch`);
  if (!stateDir) issues.add("Cannot choose a state folder: set HOME or give --state-dir");
  const lockDir = file?.state.lock_dir ?? await defaultLockDir(deps, isRoot);
  if (s.lockFile === undefined && lockDir === null) {
    issues.add("Cannot choose a lock file: set XDG_RUNTIME_DIR or give --lock-file");
  }
  if (s.lockFile !== undefined && targetCount > 1) {
    issues.add("Cannot use one --lock-file for several targets: each has its own lock");
  }
  return { init, tools, uid, isRoot, logFile, stateDir, lockDir };
}

/** Step 4, continued: each target's services, and what the target is made of them. */
async function resolveTargets(
  deps: Deps,
  s: Settings,
  specs: TargetSpec[],
  place: Place,
  issues: Issues,
): Promise<Target[]> {
  const targets: Target[] = [];
  for (const spec of specs) {
    const where = spec.name === null ? "" : `target "${spec.name}": `;
    const fpm = await chooseService(deps, "php-fpm", spec.service, spec.processName, "--service");
    if (typeof fpm === "string") {
      issues.add(where + fpm);
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
        issues.add(where + found);
        continue;
      }
      cgi = found;
    }
    const fpmConfig = spec.fpmConfig ?? await fpmConfigOf(deps.fs, fpm.service);
    const lockFile = s.lockFile ?? lockPath(place.lockDir ?? "", fpm.service);
    targets.push(targetOf(spec, { ...fpm, fpmConfig }, cgi, lockFile, place));
  }
  const byService = new Map<string, string>();
  for (const t of targets) {
    const other = byService.get(t.fpm.service);
    if (other !== undefined) {
      issues.add(
        `Targets "${other}" and "${t.name}" both restart ${t.fpm.service}: one target per service`,
      );
    }
    byService.set(t.fpm.service, t.name);
  }
  return targets;
}

function targetOf(
  spec: TargetSpec,
  fpm: ServiceTarget & { fpmConfig: string | null },
  cgi: ServiceTarget | null,
  lockFile: string,
  place: Place,
): Target {
  const name = spec.name ?? fpm.service;
  // the target's own pool's, and every other pool's that does not give its own
  const stuckAfterMs = spec.extra.stuck_after || spec.timeoutMs;
  return Object.freeze({
    name,
    url: spec.url,
    timeoutMs: spec.timeoutMs,
    policy: Object.freeze(spec.policy),
    rungs: Object.freeze([...spec.rungs]),
    startTimeoutMs: spec.startTimeoutMs,
    fpm: Object.freeze({ service: fpm.service, processName: fpm.processName }),
    cgi: cgi && Object.freeze(cgi),
    pidFile: spec.pidFile ?? defaultPidFile(fpm.service),
    mailTo: Object.freeze([...spec.mailTo]),
    lockFile,
    stateFile: statePath(place.stateDir ?? "", name),
    ...fcgiSettings(spec.url, spec.status, spec.expect),
    poolName: spec.poolName ?? DEFAULT_POOL_NAME,
    pools: Object.freeze(spec.pools.map((p) =>
      Object.freeze({
        name: p.name,
        url: p.url,
        ...fcgiSettings(p.url, p.status, p.expect),
        stuckAfterMs: p.stuckAfterMs || stuckAfterMs,
      })
    )),
    fpmConfig: fpm.fpmConfig,
    stuckAfterMs,
    warn: Object.freeze({
      listenQueue: spec.extra.warn_listen_queue,
      slowRequests: spec.extra.warn_slow_requests,
      maxChildren: spec.extra.warn_max_children,
    }),
    memoryWarn: Object.freeze({
      poolKb: spec.extra.warn_pool_memory * 1024,
      workerKb: spec.extra.warn_worker_memory * 1024,
    }),
    warnEveryMs: spec.extra.warn_every,
    childCrashes: Object.freeze({
      ...spec.extra.warn_child_crashes,
      nginxErrorLog: spec.extra.nginx_error_log || null,
    }),
    opcache: Object.freeze({
      intervalMs: spec.extra.opcache_interval,
      hitDropPoints: spec.extra.warn_opcache_hit_drop,
    }),
  });
}

/** The name of a target's own pool when its configuration does not give `pool_name`. */
export const DEFAULT_POOL_NAME = "main";

/** The FastCGI side of a pool's probe: the probe's and the status page's addresses. */
function fcgiSettings(url: URL, statusUrl: URL | null, expect: string | undefined) {
  const fcgi = isFcgiUrl(url) ? fcgiTargetOf(url) : null;
  const status = statusUrl === null ? null : fcgiTargetOf(statusUrl);
  // both were checked by checkUrl: a string here cannot happen
  const probe = typeof fcgi === "string" ? null : fcgi;
  const page = typeof status === "string" ? null : status;
  return {
    fcgi: probe,
    expect: expect ?? (probe === null ? "" : "pong"),
    status: page,
    statusOnPool: probe !== null && page !== null &&
      describeFcgiTarget(probe) === describeFcgiTarget(page),
  };
}

/** Step 5: what the permissions allow, and what another user could have planted. */
async function checkPaths(
  mode: Mode,
  deps: Deps,
  s: Settings,
  file: ConfigFile | null,
  place: Place,
  targets: readonly Target[],
  issues: Issues,
): Promise<void> {
  const { logFile, stateDir, lockDir } = place;
  const metricsFile = s.metricsFile ?? file?.metrics.file ?? null;
  // the compiled binary's permissions name the folders it may use: say so before anything runs
  issues.add(...permissionProblems(deps, [
    ["log file", "write", logFile],
    ["state folder", "write", stateDir],
    ["lock file", "write", s.lockFile ?? (lockDir && `${lockDir}/php-relaunch.lock`)],
    ["metrics file", "write", metricsFile],
    ["CA file", "read", file?.mail.ca_file],
  ]));
  // report and status only read; every other mode writes (check-config says what they would
  // refuse)
  if (mode === "report" || mode === "status") return;
  issues.add(
    ...await pathProblems(deps, place.uid, {
      logFile,
      stateDir,
      stateFiles: targets.map((t) => t.stateFile),
      lockFiles: targets.map((t) => t.lockFile),
      metricsFile,
    }),
  );
}

/** Where alerts go and where metrics are served: mail, webhook, Alertmanager, /metrics. */
async function channelsAndEndpoints(
  mode: Mode,
  deps: Deps,
  s: Settings,
  file: ConfigFile | null,
  configPath: string | null,
  isRoot: boolean,
  issues: Issues,
) {
  const mail = await mailRouteOf(s, file, deps, isRoot);
  if (typeof mail === "string") issues.add(mail);
  const fleetPassword = await fleetPasswordOf(mode, file, configPath, deps, isRoot, issues);
  let webhook = s.webhook ?? null;
  if (webhook === null && file?.webhook.url !== undefined) {
    const url = checkWebhook(file.webhook.url);
    if (typeof url === "string") issues.add(`${configPath}: webhook.url: ${url}`);
    else webhook = url;
  }
  let alertmanager: URL | null = null;
  if (file?.alertmanager.url !== undefined) {
    const url = checkWebhook(file.alertmanager.url);
    if (typeof url === "string") issues.add(`${configPath}: alertmanager.url: ${url}`);
    else alertmanager = url;
  }
  let metricsListen = s.metricsListen ?? null;
  if (metricsListen === null && file?.metrics.listen !== undefined) {
    const listen = parseListen(file.metrics.listen);
    if (typeof listen === "string") issues.add(`${configPath}: metrics.listen: ${listen}`);
    else metricsListen = listen;
  }
  // check-config shows a watch configuration; the cron form has no process to serve from
  if (metricsListen !== null && mode !== "watch" && mode !== "check") {
    issues.add("Cannot serve /metrics outside watch mode: use --metrics-file with cron");
  }
  return { mail: mail as MailRoute, webhook, alertmanager, metricsListen, fleetPassword };
}

/**
 * etcd's password for `[fleet]`, from `password_file` (root's alone, as the SMTP one); null
 * without auth. `user` and `password_file` go together. Read only where the fleet is used.
 */
async function fleetPasswordOf(
  mode: Mode,
  file: ConfigFile | null,
  configPath: string | null,
  deps: Deps,
  isRoot: boolean,
  issues: Issues,
): Promise<string | null> {
  const fleet = file?.fleet;
  if (fleet === undefined || (mode !== "watch" && mode !== "check")) return null;
  if ((fleet.user === undefined) !== (fleet.password_file === undefined)) {
    issues.add(
      `${configPath}: fleet: give both user and password_file (etcd auth), or neither`,
    );
    return null;
  }
  if (fleet.password_file === undefined) return null;
  try {
    const password = await readPasswordFile(
      fleet.password_file,
      deps,
      isRoot,
      "etcd password file",
    );
    if (password === "") {
      issues.add(`Refusing etcd password file "${fleet.password_file}": it is empty`);
      return null;
    }
    return password;
  } catch (err) {
    issues.add(describeError(err));
    return null;
  }
}

/** Step 6: the configuration, frozen. */
function freeze(
  mode: Mode,
  raw: RawSettings,
  deps: Deps,
  s: Settings,
  file: ConfigFile | null,
  configPath: string | null,
  place: Place,
  targets: Target[],
  extras: Awaited<ReturnType<typeof channelsAndEndpoints>> & {
    discovered: string | null;
    deadman: Config["deadman"];
  },
): Config {
  const hostname = deps.host.hostname();
  return Object.freeze({
    mode,
    targets: Object.freeze(targets),
    runMs: s.runFor,
    restartOnOnce: raw.restart === true,
    configFile: file === null ? null : configPath,
    init: place.init,
    tools: Object.freeze(place.tools),
    logFile: place.logFile ?? "",
    logFormat: s.logFormat ?? file?.log.format ?? "text",
    stateDir: place.stateDir ?? "",
    lockDir: place.lockDir ?? "",
    mailFrom: s.mailFrom ?? file?.mail.from ?? `php-relaunch@${hostname}`,
    mail: Object.freeze(extras.mail),
    webhook: extras.webhook,
    alertmanager: extras.alertmanager,
    deadman: extras.deadman,
    discovered: extras.discovered,
    metricsFile: s.metricsFile ?? file?.metrics.file ?? null,
    metricsListen: extras.metricsListen && Object.freeze(extras.metricsListen),
    verbose: raw.verbose === true,
    hostname,
    commandTarget: s.commandTarget ?? null,
    pause: Object.freeze({ forMs: s.pauseFor ?? null, reason: s.reason ?? null }),
    report: Object.freeze({ sinceMs: s.since ?? 7 * 86_400_000, format: s.format ?? "text" }),
    fleet: file?.fleet ? fleetSettingsOf(file.fleet, hostname, extras.fleetPassword) : null,
  });
}
