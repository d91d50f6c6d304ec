/** The command line: parse, choose the mode, build the config, run, map errors to exit codes. */
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import meta from "../deno.json" with { type: "json" };
import { type Config, loadConfig, type Mode, type RawSettings } from "./config.ts";
import type { Deps } from "./deps.ts";
import { ConfigError, describeError, ExitCode } from "./errors.ts";
import { tryLock } from "./lock.ts";
import { logger, openAppendNoFollow, setupLogging } from "./log.ts";
import { type MonitorOptions, probeOnce, watchRun } from "./monitor.ts";

/** The program's version. */
export const VERSION: string = meta.version;

/** `--help`. */
export const USAGE =
  `php-relaunch ${VERSION}: restart php-fpm when its heartbeat through nginx fails

Usage:
  php-relaunch <URI> <timeout> <emails> [restart-cgi]     (the original's crontab form)
  php-relaunch --url URI [--timeout S] [--mail-to LIST] [options]
  php-relaunch --once [--restart] --url URI ...           (one probe; exit code = verdict)
  php-relaunch check-config <same arguments>              (validate, print settings, exit 0 or 2)

One run watches for one minute, so that cron can start it every minute: it probes every
<timeout> seconds (floor(60 / timeout) probes; see --run-for for mcron). On 500/502/503/504 or no answer within the
timeout it kills php-fpm's processes, starts the service again (10 attempts, each verified),
logs one line, mails the recipients and waits max(timeout, 10) s before probing again.
A 5xx is confirmed by a second one 1 s later; one timeout is enough, as in the original.
At most 3 restarts in 15 min: then it gives up (one mail) until healthy for 15 min.
Connection refused or an unknown host (nginx down) and non-heartbeat answers (444, 3xx, 4xx)
never restart php-fpm: they are logged and mailed, and the run stops.

Arguments:
  <URI>                  heartbeat page, http:// or https://, e.g.
                         http://127.0.0.1:8889/php-heartbeat.php
  <timeout>              seconds a probe may take, 1 to 60 (default 5)
  <emails>               comma-separated recipients, '' for none
  [restart-cgi]          1: also relaunch php-cgi (0 or absent: do not)

Options:
  --url URI, --timeout S, --mail-to LIST, --restart-cgi
                         the same as the arguments above
  --service NAME         php-fpm service (default: the one installed, e.g. php8.2-fpm)
  --process-name NAME    its process name for pgrep/pkill (default: from the service,
                         php8.2-fpm -> php-fpm8.2)
  --init SYSTEM          systemd, sysv, openrc or freebsd (default: detected)
  --cgi-service NAME, --cgi-process-name NAME
                         the same for php-cgi
  --run-for S            how long one run lasts: the scheduler's period (default 60 for
                         cron; 10 for mcron every 10 s). It probes floor(S / timeout) times
  --once                 probe once and exit with the verdict; no restart, no mail
  --restart              with --once: restart php-fpm if it failed
  --log-file PATH        default /var/log/php-relaunch.log (root),
                         ~/.local/state/php-relaunch.log (others)
  --lock-file PATH       default /run/lock/php-relaunch-<service>.lock (root),
                         $XDG_RUNTIME_DIR/php-relaunch-<service>.lock (others)
  --state-dir DIR        failure counts and restart history between runs (default
                         /var/lib/php-relaunch as root, ~/.local/state/php-relaunch others)
  --smtp-host HOST       mail server (default localhost, or $PHP_RELAUNCH_SMTP_HOST)
  --smtp-port PORT       its port (default 25, or $PHP_RELAUNCH_SMTP_PORT)
  --mail-from ADDRESS    sender (default php-relaunch@<hostname>, or $PHP_RELAUNCH_MAIL_FROM)
  -v, --verbose          every probe on stderr
  -h, --help             this help
  -V, --version          the version

Examples (root's crontab; cron runs /bin/sh, so use >/dev/null 2>&1, not &>):
  * * * * * /usr/local/bin/php-relaunch http://127.0.0.1:8889/php-heartbeat.php 5 'ops@example.com' >/dev/null 2>&1
  * * * * * /usr/local/bin/php-relaunch http://127.0.0.1:8889/php-heartbeat.php 5 'a@example.com,b@example.com' 1 >/dev/null 2>&1
  * * * * * pgrep mcron >/dev/null || /usr/local/bin/php-relaunch http://127.0.0.1:8889/php-heartbeat.php 5 '' >/dev/null 2>&1
  php-relaunch --once --url http://127.0.0.1:8889/php-heartbeat.php --timeout 3

Exit codes:
  0  healthy, or php-fpm was restarted and answers again; also: another run holds the lock
  1  internal error (a bug: please report it with the log)
  2  bad arguments, configuration or environment; nothing was probed or restarted
  3  php-fpm failed and is still down (restart failed or given up, failure being confirmed
     at the end of the run, or --once without --restart)
  4  the heartbeat answered, but not as a heartbeat (444, 3xx, 4xx): fix the setup
  7  the heartbeat's host refused the connection or did not resolve (nginx down)
`;

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
  "log-file": { type: "string" },
  "lock-file": { type: "string" },
  "state-dir": { type: "string" },
  init: { type: "string" },
  "smtp-host": { type: "string" },
  "smtp-port": { type: "string" },
  "mail-from": { type: "string" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

const POSITIONALS = ["url", "timeout", "mailTo", "restartCgi"] as const;

/** Parses argv into the mode and raw settings. @throws {ConfigError} on a usage error. */
export function parseCommandLine(
  argv: readonly string[],
): { mode: Mode | "help" | "version"; raw: RawSettings } {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
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
  if (positionals[0] === "check-config") {
    positionals.shift();
    mode = "check";
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
    init: v.init,
    smtpHost: v["smtp-host"],
    smtpPort: v["smtp-port"],
    mailFrom: v["mail-from"],
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
  return { mode, raw };
}

/** The settings `check-config` prints. */
export function describeConfig(cfg: Config): string {
  return [
    `heartbeat      ${cfg.url.href} (timeout ${cfg.timeoutMs / 1000} s, runs of ${
      cfg.runMs / 1000
    } s)`,
    `php-fpm        ${cfg.fpm.service} via ${cfg.init}, processes named ${cfg.fpm.processName}`,
    `php-cgi        ${
      cfg.cgi ? `${cfg.cgi.service}, processes named ${cfg.cgi.processName}` : "no"
    }`,
    `mail to        ${cfg.mailTo.length ? cfg.mailTo.join(", ") : "nobody"}`,
    `mail from      ${cfg.mailFrom} via ${cfg.smtp.host}:${cfg.smtp.port}`,
    `log file       ${cfg.logFile}`,
    `lock file      ${cfg.lockFile}`,
    `state file     ${cfg.stateFile}`,
    `tools          ${Object.values(cfg.tools).filter(Boolean).join(" ")}`,
  ].join("\n") + "\n";
}

/** Runs php-relaunch with `argv`; resolves to the process exit code. Never throws. */
export async function run(
  argv: readonly string[],
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  let cfg: Config;
  try {
    const { mode, raw } = parseCommandLine(argv);
    if (mode === "help") {
      deps.stdout(USAGE);
      return ExitCode.Ok;
    }
    if (mode === "version") {
      deps.stdout(`php-relaunch ${VERSION} (deno ${Deno.version.deno})\n`);
      return ExitCode.Ok;
    }
    cfg = await loadConfig(mode, raw, deps);
  } catch (err) {
    if (err instanceof ConfigError) {
      deps.stderr(`php-relaunch: ${err.issues.join("\nphp-relaunch: ")}\n`);
      return ExitCode.Usage;
    }
    deps.stderr(`php-relaunch: internal error: ${describeError(err)}\n`);
    return ExitCode.Internal;
  }
  if (cfg.mode === "check") {
    deps.stdout(describeConfig(cfg));
    return ExitCode.Ok;
  }
  return await runWithConfig(cfg, deps, options);
}

async function runWithConfig(cfg: Config, deps: Deps, options: MonitorOptions): Promise<ExitCode> {
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
    });
    // a read-only check needs no lock: it may run beside a cron run
    const needsLock = cfg.mode === "minute" || cfg.restartOnOnce;
    let lock = null;
    if (needsLock) {
      try {
        lock = await tryLock(cfg.lockFile);
      } catch (err) {
        deps.stderr(`php-relaunch: ${describeError(err)}\n`);
        return ExitCode.Usage;
      }
      if (lock === null) {
        logger.info("Another php-relaunch holds {lock}; this run does nothing.", {
          lock: cfg.lockFile,
        });
        return ExitCode.Ok;
      }
    }
    try {
      return cfg.mode === "once"
        ? await probeOnce(cfg, deps, options)
        : await watchRun(cfg, deps, options);
    } finally {
      lock?.[Symbol.dispose]();
    }
  } catch (err) {
    logger.fatal("Internal error: {error}", { error: describeError(err) });
    deps.stderr(`php-relaunch: internal error: ${describeError(err)}\n`);
    return ExitCode.Internal;
  } finally {
    logFile.close();
  }
}
