/** The command line: parse, choose the mode, build the config, run, map errors to exit codes. */
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "./config/load.ts";
import {
  type Config,
  incidentsPath,
  lockPath,
  type Mode,
  type RawSettings,
  statePath,
} from "./config/settings.ts";
import type { Deps } from "./shared/deps.ts";
import { ConfigError, describeError, ExitCode } from "./shared/errors.ts";
import { tryLock, waitForLock } from "./shared/lock.ts";
import { fileStateStore, rearmStored, storedTargets } from "./run/state.ts";
import { systemdNotifier } from "./run/notify.ts";
import { watchForever, type WatchOptions } from "./run/watch.ts";
import { logger, openAppendNoFollow, setupLogging } from "./shared/log.ts";
import { probeOnce, watchRun } from "./run/cron.ts";
import { readTargetStatuses, renderStatus, statusExit } from "./run/status.ts";
import type { MonitorOptions } from "./run/context.ts";
import { readIncidents } from "./record/incidents.ts";
import { buildReport, opcacheHints, renderReport } from "./record/incident_report.ts";
import type { OpcacheCounters } from "./record/metrics.ts";
import { OPCACHE_SCRIPT } from "./fpm/opcache.ts";
import { describeRoute } from "./alert/mail.ts";
import { describeFcgiTarget } from "./probe/fcgi.ts";
import { revision } from "./revision.ts";
import { USAGE, VERSION } from "./usage.ts";
import { pauseTargets, resumeTargets } from "./pause.ts";
import { discover } from "./discover.ts";
import { escapeControl, publicUrl, webhookName } from "./shared/redact.ts";

const OPTIONS = {
  url: { type: "string" },
  timeout: { type: "string" },
  "run-for": { type: "string" },
  "mail-to": { type: "string" },
  "restart-cgi": { type: "boolean" },
  service: { type: "string" },
  "process-name": { type: "string" },
  "cgi-service": { type: "string" },
  "cgi-process-name": { type: "string" },
  once: { type: "boolean" },
  restart: { type: "boolean" },
  config: { type: "string", short: "c" },
  interval: { type: "string" },
  "log-file": { type: "string" },
  "log-format": { type: "string" },
  "lock-file": { type: "string" },
  "state-dir": { type: "string" },
  init: { type: "string" },
  "smtp-host": { type: "string" },
  "smtp-port": { type: "string" },
  "mail-from": { type: "string" },
  "status-url": { type: "string" },
  "mail-transport": { type: "string" },
  "smtp-tls": { type: "string" },
  "smtp-user": { type: "string" },
  "smtp-password-file": { type: "string" },
  webhook: { type: "string" },
  "metrics-file": { type: "string" },
  "metrics-listen": { type: "string" },
  expect: { type: "string" },
  since: { type: "string" },
  for: { type: "string" },
  reason: { type: "string" },
  auto: { type: "boolean" },
  format: { type: "string" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

const POSITIONALS = ["url", "timeout", "mailTo", "restartCgi"] as const;

const SUBCOMMANDS: Record<string, Mode> = {
  "check-config": "check",
  watch: "watch",
  reset: "reset",
  report: "report",
  status: "status",
  pause: "pause",
  resume: "resume",
  discover: "discover",
};

/**
 * `discover --config` (no file after it) asks for the configuration as TOML: `--format toml`.
 * Anywhere else `--config` names a file, as always.
 */
function discoverArgs(argv: readonly string[]): string[] {
  if (argv[0] !== "discover") return [...argv];
  return argv.map((arg, i) =>
    arg === "--config" && (argv[i + 1] === undefined || argv[i + 1]!.startsWith("-"))
      ? "--format=toml"
      : arg
  );
}

/** Parses argv into the mode and raw settings. @throws {ConfigError} on a usage error. */
export function parseCommandLine(
  argv: readonly string[],
): { mode: Mode | "help" | "version"; raw: RawSettings } {
  let parsed;
  try {
    parsed = parseArgs({
      args: discoverArgs(argv),
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    // node's messages name the flag; drop its advice about "--" which does not apply here
    const message = err instanceof Error ? err.message.split(". To specify")[0] : String(err);
    throw new ConfigError([`${message}; see php-relaunch --help`]);
  }
  const { values: v } = parsed;
  if (v.help) return { mode: "help", raw: {} };
  if (v.version) return { mode: "version", raw: {} };

  const positionals = [...parsed.positionals];
  let mode: Mode = v.once ? "once" : "minute";
  const subcommand = SUBCOMMANDS[positionals[0] ?? ""];
  if (subcommand !== undefined) {
    positionals.shift();
    mode = subcommand;
    if (v.once) {
      throw new ConfigError([`Cannot use --once with ${mode === "check" ? "check-config" : mode}`]);
    }
  }
  let commandTarget: string | undefined;
  if (mode === "report" && positionals.length > 0) {
    throw new ConfigError([
      "Too many arguments: php-relaunch report [--since DURATION] [--format text|json]",
    ]);
  }
  if (v.since !== undefined && mode !== "report") {
    throw new ConfigError(["Cannot use --since without report"]);
  }
  if (v.format !== undefined && mode !== "report" && mode !== "status" && mode !== "discover") {
    throw new ConfigError(["Cannot use --format without report, status or discover"]);
  }
  if (v.auto && mode !== "watch" && mode !== "check") {
    throw new ConfigError(["Cannot use --auto without watch or check-config"]);
  }
  if (v.auto && (positionals.length > 0 || v.url !== undefined)) {
    throw new ConfigError(["Cannot use --auto with a URI: --auto watches what discovery finds"]);
  }
  if (mode === "discover" && positionals.length > 0) {
    throw new ConfigError(["Too many arguments: php-relaunch discover [--config]"]);
  }
  if (v.for !== undefined && mode !== "pause") {
    throw new ConfigError(["Cannot use --for without pause"]);
  }
  if (v.reason !== undefined && mode !== "pause" && mode !== "resume") {
    throw new ConfigError(["Cannot use --reason without pause or resume"]);
  }
  if (mode === "reset" || mode === "pause" || mode === "resume") {
    if (positionals.length > 1) {
      throw new ConfigError([`Too many arguments: php-relaunch ${mode} [target]`]);
    }
    commandTarget = positionals.shift();
  }
  if (argv.length === 0) {
    throw new ConfigError([
      "Missing arguments: php-relaunch <URI> <timeout> <emails> [restart-cgi]; see --help",
    ]);
  }
  if (positionals.length > POSITIONALS.length) {
    throw new ConfigError([
      `Too many arguments: got ${positionals.length} (${
        positionals.slice(POSITIONALS.length).map((p) => `"${p}"`).join(" ")
      } extra), expected at most <URI> <timeout> <emails> [restart-cgi]`,
    ]);
  }
  return { mode, raw: rawSettings(v, positionals, commandTarget) };
}

/** The parsed flags and positionals as settings; a positional and its flag together refused. */
function rawSettings(
  v: ReturnType<
    typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>
  >["values"],
  positionals: readonly string[],
  commandTarget: string | undefined,
): RawSettings {
  const flags: RawSettings = {
    url: v.url,
    timeout: v.timeout,
    mailTo: v["mail-to"],
    restartCgi: v["restart-cgi"],
  };
  const raw: RawSettings = {
    service: v.service,
    processName: v["process-name"],
    cgiService: v["cgi-service"],
    cgiProcessName: v["cgi-process-name"],
    restart: v.restart,
    runFor: v["run-for"],
    logFile: v["log-file"],
    lockFile: v["lock-file"],
    stateDir: v["state-dir"],
    config: v.config,
    interval: v.interval,
    logFormat: v["log-format"],
    commandTarget,
    pauseFor: v.for,
    reason: v.reason,
    auto: v.auto,
    init: v.init,
    smtpHost: v["smtp-host"],
    smtpPort: v["smtp-port"],
    mailFrom: v["mail-from"],
    statusUrl: v["status-url"],
    mailTransport: v["mail-transport"],
    smtpTls: v["smtp-tls"],
    smtpUser: v["smtp-user"],
    smtpPasswordFile: v["smtp-password-file"],
    webhook: v.webhook,
    metricsFile: v["metrics-file"],
    metricsListen: v["metrics-listen"],
    expect: v.expect,
    since: v.since,
    format: v.format,
    verbose: v.verbose,
  };
  const twice: string[] = [];
  POSITIONALS.forEach((key, i) => {
    const fromPosition = positionals[i];
    if (fromPosition !== undefined && flags[key] !== undefined) twice.push(key);
    raw[key] = (fromPosition ?? flags[key]) as never;
  });
  if (twice.length > 0) {
    throw new ConfigError(
      twice.map((k) =>
        `Cannot give ${k} both as an argument and as --${
          k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
        }: use one`
      ),
    );
  }
  return raw;
}

/** The settings `check-config` prints. */
export function describeConfig(cfg: Config): string {
  const lines = [
    `config file    ${cfg.configFile ?? "none (command line)"}`,
    `init system    ${cfg.init}: ${Object.values(cfg.tools).filter(Boolean).join(" ")}`,
    `mail from      ${cfg.mailFrom} via ${describeRoute(cfg.mail)}`,
    `webhook        ${cfg.webhook ? webhookName(cfg.webhook) : "none"}`,
    `metrics        ${
      [
        cfg.metricsFile && `file ${cfg.metricsFile}`,
        cfg.metricsListen &&
        `http://${cfg.metricsListen.hostname}:${cfg.metricsListen.port}/metrics`,
      ].filter(Boolean).join(", ") || "none"
    }`,
    `log file       ${cfg.logFile} (${cfg.logFormat})`,
    `state folder   ${cfg.stateDir}`,
  ];
  if (cfg.mode !== "watch") lines.push(`run length     ${cfg.runMs / 1000} s`);
  for (const t of cfg.targets) {
    const p = t.policy;
    lines.push(
      "",
      `target ${t.name}`,
      `  heartbeat    ${publicUrl(t.url)} (timeout ${t.timeoutMs / 1000} s, every ${
        p.intervalMs / 1000
      } s)`,
      `  php-fpm      ${t.fpm.service}, processes named ${t.fpm.processName}`,
      `  expect       ${
        t.expect === "" ? "any 2xx answer" : `a 2xx whose body starts with "${t.expect}"`
      }`,
      `  php-cgi      ${t.cgi ? `${t.cgi.service}, processes named ${t.cgi.processName}` : "no"}`,
      `  restart      after ${p.failureThreshold} failures or ${p.timeoutThreshold} timeouts (5xx confirmed after ${
        p.confirmDelayMs / 1000
      } s); rungs ${t.rungs.join(" > ")}; at most ${p.maxRestarts} in ${
        p.restartWindowMs / 60_000
      } min`,
      `  status page  ${
        t.status === null
          ? "none (set status_url for early warnings, busy-or-hung and evidence)"
          : `${
            describeFcgiTarget(t.status)
          }${t.status.path}; warn at listen queue > ${t.warn.listenQueue}, +${t.warn.slowRequests} slow requests${
            t.warn.maxChildren ? ", max children reached" : ""
          }; overloaded: ${p.onOverload}; stuck after ${t.stuckAfterMs / 1000} s`
      }`,
      ...(t.pools.length === 0 ? [] : [
        `  pools        ${t.poolName} (the heartbeat's), ${
          t.pools.map((p) => p.name).join(", ")
        }: one failing while another answers has its stuck workers killed; the service is restarted only when none answers`,
        ...t.pools.map((p) =>
          `  pool ${p.name.padEnd(8)}${publicUrl(p.url)}; status page ${
            p.status === null ? "none" : `${describeFcgiTarget(p.status)}${p.status.path}`
          }; stuck after ${p.stuckAfterMs / 1000} s`
        ),
      ]),
      `  php-fpm conf ${t.fpmConfig ?? "unknown (set fpm_config)"}`,
      `  crash loops  ${childCrashesLine(t)}`,
      `  OPcache      ${
        (t.opcache?.intervalMs ?? 0) === 0
          ? "not watched (opcache_interval = 0)"
          : `${OPCACHE_SCRIPT} asked every ${
            t.opcache!.intervalMs / 1000
          } s when installed; warn when the hit rate falls ${t.opcache!.hitDropPoints} points`
      }`,
      `  mail to      ${t.mailTo.length ? t.mailTo.join(", ") : "nobody"}`,
      `  lock, state  ${t.lockFile}, ${t.stateFile}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** Runs php-relaunch with `argv`; resolves to the process exit code. Never throws. */
export async function run(
  argv: readonly string[],
  deps: Deps,
  options: MonitorOptions & WatchOptions = {},
): Promise<ExitCode> {
  try {
    return await runCommand(argv, deps, options);
  } catch (err) {
    return failed(err, deps);
  }
}

/**
 * Says why a run could not go on, on stderr, each problem on one line: exit 2 for what the
 * operator must fix (a {@link ConfigError}), 1 for a bug. Never a stack trace.
 */
function failed(err: unknown, deps: Deps): ExitCode {
  if (err instanceof ConfigError) {
    deps.stderr(err.issues.map((issue) => `php-relaunch: ${escapeControl(issue)}\n`).join(""));
    return ExitCode.Usage;
  }
  deps.stderr(`php-relaunch: internal error: ${describeError(err)}\n`);
  return ExitCode.Internal;
}

async function runCommand(
  argv: readonly string[],
  deps: Deps,
  options: MonitorOptions & WatchOptions,
): Promise<ExitCode> {
  const { mode, raw } = parseCommandLine(argv);
  if (mode === "help") {
    deps.stdout(USAGE);
    return ExitCode.Ok;
  }
  if (mode === "version") {
    const rev = await revision();
    deps.stdout(
      `php-relaunch ${VERSION} (deno ${Deno.version.deno}, revision ${rev ?? "unknown"})\n`,
    );
    return ExitCode.Ok;
  }
  // discovery needs no configuration: it is how one is written
  if (mode === "discover") return await discover(raw.format, deps);
  const cfg = await loadConfig(mode, raw, deps);
  if (mode === "watch") {
    options = {
      reload: () => loadConfig("watch", raw, deps),
      notifier: await systemdNotifier(deps.host, deps.runner, deps.fs.isExecutable, Deno.pid),
      ...options,
    };
  }
  if (cfg.mode === "check") {
    deps.stdout(describeConfig(cfg).split("\n").map(escapeControl).join("\n"));
    return ExitCode.Ok;
  }
  if (cfg.mode === "report") return await printReport(cfg, deps);
  if (cfg.mode === "status") return await printStatus(cfg, deps);
  return await runWithConfig(cfg, deps, options);
}

async function runWithConfig(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions & WatchOptions,
): Promise<ExitCode> {
  let logFile: Deno.FsFile;
  try {
    if (deps.host.uid() !== 0) {
      // the per-user default (~/.local/state) may not exist yet; root's /var/log does
      await Deno.mkdir(dirname(cfg.logFile), { recursive: true, mode: 0o700 });
    }
    logFile = await openAppendNoFollow(cfg.logFile);
  } catch (err) {
    deps.stderr(`php-relaunch: Cannot open log file "${cfg.logFile}": ${describeError(err)}\n`);
    return ExitCode.Usage;
  }
  try {
    setupLogging({
      file: logFile,
      stderr: cfg.verbose || deps.host.stderrIsTerminal(),
      verbose: cfg.verbose,
      hostname: cfg.hostname,
      format: cfg.logFormat,
    });
    switch (cfg.mode) {
      case "once":
        return await probeOnce(cfg, deps, options);
      case "watch":
        return await watchForever(cfg, deps, options);
      case "reset":
        return await resetTargets(cfg, deps);
      case "pause":
        return await pauseTargets(cfg, deps, options);
      case "resume":
        return await resumeTargets(cfg, deps, options);
      default:
        return await watchRun(cfg, deps, options);
    }
  } catch (err) {
    // a lock or state path that is refused is the operator's to fix, not a bug
    logger.fatal("{error}", { error: describeError(err) });
    return failed(err, deps);
  } finally {
    logFile.close();
  }
}

/** `status`: every target's standing, from the state files (no log, no lock, no wait). */
async function printStatus(cfg: Config, deps: Deps): Promise<ExitCode> {
  const list = await readTargetStatuses(cfg, deps.fs, deps.clock.now());
  deps.stdout(
    cfg.report.format === "json"
      ? JSON.stringify(list, null, 2) + "\n"
      : renderStatus(list, deps.clock.now()),
  );
  return statusExit(list);
}

/** How many skipped records `report` names one by one. */
const MAX_PROBLEMS_SHOWN = 5;

/** `report`: reads the incident log (read-only: no log file, no lock) and prints the report. */
async function printReport(cfg: Config, deps: Deps): Promise<ExitCode> {
  const until = deps.clock.now();
  const since = until - cfg.report.sinceMs;
  const path = incidentsPath(cfg.stateDir);
  let read;
  try {
    read = await readIncidents(path, since);
  } catch (err) {
    throw new ConfigError([`Cannot read the incident log "${path}": ${describeError(err)}`]);
  }
  // the report's log is stderr: one line for each record left out, the first few of them
  for (const problem of read.problems.slice(0, MAX_PROBLEMS_SHOWN)) {
    deps.stderr(`php-relaunch: skipped a record of the incident log: ${escapeControl(problem)}\n`);
  }
  if (read.problems.length > MAX_PROBLEMS_SHOWN) {
    deps.stderr(
      `php-relaunch: skipped ${
        read.problems.length - MAX_PROBLEMS_SHOWN
      } more records of the incident log\n`,
    );
  }
  const report = buildReport(read.incidents, since, until, read.skipped);
  report.hints.push(...opcacheHints(await opcacheReads(cfg, deps)));
  deps.stdout(
    cfg.report.format === "json" ? JSON.stringify(report, null, 2) + "\n" : renderReport(report),
  );
  return ExitCode.Ok;
}

/**
 * Each target's last OPcache read, from its state file: the configured targets, or every state
 * file in the state folder.
 */
async function opcacheReads(
  cfg: Config,
  deps: Deps,
): Promise<{ target: string; opcache: OpcacheCounters | undefined }[]> {
  const targets = cfg.targets.length > 0
    ? cfg.targets.map((t) => ({ name: t.name, file: t.stateFile }))
    : (await storedTargets(deps.fs, cfg.stateDir)).map((name) => ({
      name,
      file: statePath(cfg.stateDir, name),
    }));
  return await Promise.all(targets.map(async (t) => {
    const exists = await deps.fs.info(t.file).catch(() => null);
    const memory = exists === null ? null : await fileStateStore(t.file).load();
    return { target: t.name, opcache: memory?.counters.opcache };
  }));
}

/** How long `reset` waits for a cron run under way to finish with the target. */
const RESET_LOCK_WAIT_MS = 75_000;
/** How often `reset` tries the lock again meanwhile. */
const RESET_LOCK_POLL_MS = 500;

/**
 * `reset [target]`: forgets giving up and the restart history of one target, or all. It takes
 * each target's lock first, so that a cron run under way cannot write the old state back over
 * it; a watch process holds its locks for good, and is re-armed with SIGHUP instead.
 */
async function resetTargets(cfg: Config, deps: Deps): Promise<ExitCode> {
  const lockOf = new Map(cfg.targets.map((t) => [t.name, t.lockFile]));
  const names = cfg.commandTarget !== null
    ? [cfg.commandTarget]
    : cfg.targets.length > 0
    ? cfg.targets.map((t) => t.name)
    : await storedTargets(deps.fs, cfg.stateDir);
  let code: ExitCode = ExitCode.Ok;
  for (const name of names) {
    // the cron form names its target after the service, as its lock
    const lockFile = lockOf.get(name) ?? lockPath(cfg.lockDir, name);
    const until = deps.clock.now() + RESET_LOCK_WAIT_MS;
    const { lock } = await waitForLock({
      take: () => tryLock(lockFile),
      clock: deps.clock,
      pollMs: RESET_LOCK_POLL_MS,
      timeLeft: (now) => now < until,
    });
    if (lock === null) {
      deps.stderr(
        `php-relaunch: ${name} is held by a running php-relaunch (${lockFile}): if it is the watch service, re-arm it with SIGHUP (systemctl reload php-relaunch)\n`,
      );
      code = ExitCode.Usage;
      continue;
    }
    using _held = lock;
    await rearmStored(fileStateStore(statePath(cfg.stateDir, name)));
    logger.info("Re-armed {name}: restart history and giving up forgotten.", { name });
    deps.stdout(`re-armed ${name}\n`);
  }
  if (names.length === 0) deps.stdout(`nothing to reset in ${cfg.stateDir}\n`);
  return code;
}

/** What `check-config` says of a target's watch of its crashing children. */
function childCrashesLine(t: Config["targets"][number]): string {
  const c = t.childCrashes;
  if (c === undefined || c.count === 0) return "not watched (warn_child_crashes = 0)";
  if (t.fpmConfig === null) {
    return "not watched: php-fpm's configuration is unknown (set fpm_config)";
  }
  return `alert at ${c.count} crashes of a pool within ${
    c.windowMs / 1000
  } s, from php-fpm's error_log; nginx's lost requests from ${
    c.nginxErrorLog ?? 'nowhere (nginx_error_log = "")'
  }`;
}
