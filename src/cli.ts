/**
 * The command line: parse argv, choose the command, load its configuration, run it, map errors
 * to exit codes. Each command's module (src/commands/) is loaded only when it is the one run, so
 * a run does not carry the code of the others (mail, metrics, the report).
 */
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "./config/load.ts";
import type { Config, Mode, RawSettings } from "./config/settings.ts";
import type { Deps } from "./shared/deps.ts";
import { ConfigError, describeError, ExitCode } from "./shared/errors.ts";
import type { WatchOptions } from "./run/watch.ts";
import { logger, openAppendNoFollow, setupLogging } from "./shared/log.ts";
import type { MonitorOptions } from "./run/context.ts";
import { revision } from "./revision.ts";
import { USAGE, VERSION } from "./usage.ts";
import { escapeControl } from "./shared/redact.ts";

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
  "deadman-url": { type: "string" },
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
    deadmanUrl: v["deadman-url"],
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
  if (mode === "discover") {
    const { discover } = await import("./commands/discover.ts");
    return await discover(raw.format, deps);
  }
  const cfg = await loadConfig(mode, raw, deps);
  if (mode === "watch") {
    const { watchOptions } = await import("./commands/watch_mode.ts");
    options = await watchOptions(raw, deps, options);
  }
  if (cfg.mode === "check") {
    const { checkConfig } = await import("./commands/check_config.ts");
    return checkConfig(cfg, deps);
  }
  if (cfg.mode === "report") {
    const { printReport } = await import("./commands/report.ts");
    return await printReport(cfg, deps);
  }
  if (cfg.mode === "status") {
    const { printStatus } = await import("./commands/status.ts");
    return await printStatus(cfg, deps);
  }
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
    return await runLogged(cfg, deps, options);
  } catch (err) {
    // a lock or state path that is refused is the operator's to fix, not a bug
    logger.fatal("{error}", { error: describeError(err) });
    return failed(err, deps);
  } finally {
    logFile.close();
  }
}

/** The commands that log to the log file: each run once its log is open. */
async function runLogged(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions & WatchOptions,
): Promise<ExitCode> {
  switch (cfg.mode) {
    case "watch": {
      const { runWatchMode } = await import("./commands/watch_mode.ts");
      return await runWatchMode(cfg, deps, options);
    }
    case "reset": {
      const { resetTargets } = await import("./commands/reset.ts");
      return await resetTargets(cfg, deps);
    }
    case "pause": {
      const { pauseTargets } = await import("./commands/pause.ts");
      return await pauseTargets(cfg, deps, options);
    }
    case "resume": {
      const { resumeTargets } = await import("./commands/pause.ts");
      return await resumeTargets(cfg, deps, options);
    }
    default: {
      // the cron form's period, or --once
      const { runCronForm } = await import("./commands/cron_form.ts");
      return await runCronForm(cfg, deps, options);
    }
  }
}
