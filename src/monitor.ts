/**
 * The decisions of a run: probe, judge, restart only when a restart can help, log, alert.
 * `watchRun` is the cron form (one minute of probes); `probeOnce` is `--once`.
 */
import { AlertQueue } from "./alert.ts";
import type { Config } from "./config.ts";
import type { Deps } from "./deps.ts";
import { ExitCode } from "./errors.ts";
import { formatLine, logger } from "./log.ts";
import { labelOf, probeHttp, type ProbeResult, verdictOf } from "./probe_http.ts";
import { relaunch, type RelaunchOptions, type RelaunchReport } from "./restart.ts";
import { nextProbeAt, planRun } from "./schedule.ts";

/** Tuning that tests shorten; production uses the defaults. */
export interface MonitorOptions {
  relaunch?: RelaunchOptions;
}

class Watch {
  readonly alerts: AlertQueue;

  constructor(
    readonly cfg: Config,
    readonly deps: Deps,
    readonly options: MonitorOptions,
  ) {
    this.alerts = new AlertQueue(deps.mailer, {
      hostname: cfg.hostname,
      from: cfg.mailFrom,
      to: cfg.mailTo,
      smtp: cfg.smtp,
    });
  }

  probe(): Promise<ProbeResult> {
    return probeHttp(this.cfg.url, this.cfg.timeoutMs, this.deps.httpGet, this.deps.clock.now);
  }

  /** Logs `message` as one line and, when `subject` is given, mails it with `details`. */
  event(
    level: "info" | "warn" | "error",
    message: string,
    subject: string | null,
    details: string[],
  ): void {
    logger[level]("{message}", { message });
    if (subject !== null) {
      this.alerts.send({
        subject,
        line: formatLine(this.deps.clock.now(), this.cfg.hostname, message),
        details,
      });
    }
  }

  probeDetails(result: ProbeResult): string[] {
    const what = result.kind === "status" ? `HTTP ${result.status}` : result.kind;
    return [
      `Heartbeat: ${this.cfg.url.href}`,
      `Probe: ${what} after ${result.ms} ms (timeout ${this.cfg.timeoutMs / 1000} s)`,
      ...(result.detail ? [`Detail: ${result.detail.split("\n")[0]}`] : []),
    ];
  }

  /** Restarts php-fpm (and php-cgi when asked); true when the heartbeat is healthy again. */
  async restart(first: ProbeResult): Promise<boolean> {
    const { cfg, deps } = this;
    logger.debug("{label} PHP failed ({detail}); relaunching {service}.", {
      label: labelOf(first),
      detail: first.detail,
      service: cfg.fpm.service,
    });
    const ctx = {
      init: cfg.init,
      tools: cfg.tools,
      runner: deps.runner,
      clock: deps.clock,
      ...(this.options.relaunch ? { options: this.options.relaunch } : {}),
    };
    const reports: RelaunchReport[] = [
      await relaunch(cfg.fpm, ctx, async () => verdictOf(await this.probe()) === "healthy"),
    ];
    // php-cgi is a fallback behind the same heartbeat: its processes running is all we can check
    if (cfg.cgi !== null) reports.push(await relaunch(cfg.cgi, ctx, () => Promise.resolve(true)));
    const failed = reports.filter((r) => !r.ok);
    const details = [
      ...this.probeDetails(first),
      ...reports.map((r) =>
        `Service ${r.service} (${cfg.init}): ${r.killed} processes killed, ${r.attempts} start attempts, ${
          r.ok ? "running" : `FAILED: ${r.reason}`
        }`
      ),
    ];
    const label = labelOf(first);
    if (failed.length === 0) {
      this.event("info", `${label} PHP restarted.`, "PHP restart", details);
      return true;
    }
    const why = failed.map((r) => `${r.service}: ${r.reason}`).join("; ");
    this.event("error", `${label} PHP restart failed (${why}).`, "PHP restart failed", details);
    return false;
  }

  /** Logs and alerts a failure that a restart cannot fix; returns its exit code. */
  notRestartable(result: ProbeResult, alert: boolean): ExitCode {
    const label = labelOf(result);
    const url = this.cfg.url.href;
    if (verdictOf(result) === "unreachable") {
      this.event(
        "error",
        `${label} PHP not restarted: heartbeat ${url} unreachable (${
          result.kind === "dns" ? "host name does not resolve" : "connection refused"
        }); nginx or the address is down, and restarting php-fpm cannot help.`,
        alert ? "PHP heartbeat unreachable" : null,
        this.probeDetails(result),
      );
      return ExitCode.Unreachable;
    }
    this.event(
      "error",
      `${label} PHP not restarted: heartbeat ${url} ${misconfigurationHint(result)}`,
      alert ? "PHP heartbeat misconfigured" : null,
      this.probeDetails(result),
    );
    return ExitCode.Misconfigured;
  }
}

/** Says what a non-heartbeat answer probably means, for the operator to fix. */
export function misconfigurationHint(result: ProbeResult): string {
  if (result.kind === "closed") {
    return "closed the connection without answering: nginx's return 444? Allow this address in heartbeat_allowed.conf.";
  }
  if (result.kind === "error") {
    return `failed: ${result.detail}. Check the URI's scheme and port.`;
  }
  const status = result.status ?? 0;
  if (status >= 300 && status < 400) {
    return `answered ${status} (${result.detail}): the heartbeat must answer itself, not redirect.`;
  }
  if (status === 404) return "answered 404: check the vhost's root and the heartbeat page's path.";
  if (status === 401 || status === 403) {
    return `answered ${status}: the heartbeat location must not require access rights.`;
  }
  return `answered ${status}, which is not a heartbeat's 2xx nor php-fpm's 5xx: check the vhost.`;
}

/**
 * The cron form: probes every `timeout` seconds for one run period (a minute by default);
 * restarts php-fpm on a 5xx or a timeout; stops at once, without restarting, when nginx is
 * unreachable or misconfigured.
 */
export async function watchRun(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  const watch = new Watch(cfg, deps, options);
  const plan = planRun(cfg.timeoutMs, cfg.runMs);
  const startedAt = deps.clock.now();
  let dueAt = startedAt;
  let probesDone = 0;
  let exit: ExitCode = ExitCode.Ok;
  try {
    while (true) {
      const result = await watch.probe();
      probesDone++;
      const verdict = verdictOf(result);
      logger.debug("Probe {n}: {label} in {ms} ms.", {
        n: probesDone,
        label: labelOf(result),
        ms: result.ms,
      });
      let restartEndedAt: number | null = null;
      if (verdict === "php_down") {
        if (!(await watch.restart(result))) {
          exit = ExitCode.PhpDown;
          break;
        }
        restartEndedAt = deps.clock.now();
      } else if (verdict !== "healthy") {
        exit = watch.notRestartable(result, true);
        break;
      }
      const next = nextProbeAt(plan, { startedAt, probesDone }, { dueAt, restartEndedAt });
      if (next === null) break;
      dueAt = next;
      await deps.clock.sleep(next - deps.clock.now());
    }
  } finally {
    await watch.alerts.flush();
  }
  return exit;
}

/**
 * `--once`: one probe whose verdict is the exit code. Restarts only with `--restart`; mails only
 * what it did, so that monitoring systems calling it often do not flood the recipients.
 */
export async function probeOnce(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  const watch = new Watch(cfg, deps, options);
  const result = await watch.probe();
  const verdict = verdictOf(result);
  deps.stdout(`${labelOf(result)} ${verdict} in ${result.ms} ms: ${cfg.url.href}\n`);
  try {
    switch (verdict) {
      case "healthy":
        return ExitCode.Ok;
      case "php_down":
        if (!cfg.restartOnOnce) {
          logger.warn("{label} PHP down, not restarted (--once without --restart).", {
            label: labelOf(result),
          });
          return ExitCode.PhpDown;
        }
        return (await watch.restart(result)) ? ExitCode.Ok : ExitCode.PhpDown;
      default:
        return watch.notRestartable(result, false);
    }
  } finally {
    await watch.alerts.flush();
  }
}
