/**
 * Carrying out the policy's decisions: probe, decide (policy.ts), restart, log, alert, remember.
 * `watchRun` is the cron form (one scheduler period of probes); `probeOnce` is `--once`.
 */
import { publicUrl } from "../shared/redact.ts";
import { AlertQueue, channels } from "../alert/queue.ts";
import { fileOutbox, type Outbox, retryOutbox } from "../alert/outbox.ts";
import { describeRoute } from "../alert/mail.ts";
import {
  countGiveUp,
  countPool,
  countProbe,
  countRestart,
  renderMetrics,
  writeMetricsFile,
} from "../record/metrics.ts";
import { type Config, incidentsPath, outboxPath, type Target } from "../config/settings.ts";
import type { Deps } from "../shared/deps.ts";
import { ExitCode } from "../shared/errors.ts";
import { formatLine, logger } from "../shared/log.ts";
import {
  type Action,
  afterRestart,
  decide,
  freshState,
  type Incident,
  type TargetState,
} from "./policy.ts";
import type { Policy } from "../config/policy.ts";
import { probeHttp } from "../probe/http.ts";
import { labelOf, type ProbeResult, type Verdict, verdictOf } from "../probe/result.ts";
import { describeFcgiTarget, probeFcgi } from "../probe/fcgi.ts";
import {
  DEFAULT_RELAUNCH,
  readPidFile,
  relaunch,
  type RelaunchOptions,
  type RelaunchReport,
} from "../act/restart.ts";
import {
  assessPool,
  isBusy,
  poolLine,
  type PoolStatus,
  readStatus,
  stuckWorkers,
  warningsOf,
} from "../fpm/status.ts";
import { captureEvidence, type Evidence, evidenceLines } from "../fpm/evidence.ts";
import { fileIncidentLog, type IncidentLog } from "../record/incidents.ts";
import { describeError } from "../shared/errors.ts";
import { fitsInRun, nextDue, type Timing } from "./schedule.ts";
import { type TryLock, tryLock } from "../shared/lock.ts";
import { fileStateStore, type StateStore } from "./state.ts";

/** Tuning that tests shorten, and the state store they replace; production uses the defaults. */
export interface MonitorOptions {
  relaunch?: RelaunchOptions;
  store?: StateStore;
  /** Where incidents are recorded; by default the state folder's incidents.jsonl. */
  incidents?: IncidentLog;
  /** Where undelivered alerts wait; by default the state folder's outbox/. */
  outbox?: Outbox;
  /** How a target's lock is taken; by default its lock file. */
  lock?: TryLock;
}

/** The outbox of undelivered alerts. */
export function outboxOf(cfg: Config, options: MonitorOptions): Outbox {
  return options.outbox ?? fileOutbox(outboxPath(cfg.stateDir));
}

/** Retries the alerts earlier runs could not deliver. Never throws. */
export async function retryAlerts(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions,
): Promise<void> {
  await retryOutbox(
    outboxOf(cfg, options),
    channels(deps, cfg.mail, cfg.webhook),
    deps.clock.now(),
  );
}

/** The most the evidence may delay a restart. */
const EVIDENCE_LIMIT_MS = 2000;
/** The most one read of the status page may take (pm.status_listen answers in milliseconds). */
const STATUS_LIMIT_MS = 1500;
/** A status read younger than this is evidence enough; older, it is read again. */
const STATUS_FRESH_MS = 3000;

/** How many seconds, for people. */
function seconds(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

/** One watched target: its settings, its memory, and how to tell people. */
export class Watch {
  readonly alerts: AlertQueue;
  /** True while a relaunch runs: slow (bounded by its commands' timeouts), not hung. */
  restarting = false;
  /** The last status read by the hang check, reused as evidence when fresh. */
  private lastStatus: { at: number; status: PoolStatus | string } | null = null;

  constructor(
    readonly cfg: Config,
    readonly target: Target,
    readonly deps: Deps,
    readonly options: MonitorOptions,
    public state: TargetState,
  ) {
    this.alerts = new AlertQueue(
      channels(deps, cfg.mail, cfg.webhook),
      outboxOf(cfg, options),
      {
        hostname: cfg.hostname,
        from: cfg.mailFrom,
        to: target.mailTo,
        webhook: cfg.webhook,
        via: describeRoute(cfg.mail),
      },
      deps.clock.now,
    );
  }

  probe(stop?: AbortSignal): Promise<ProbeResult> {
    if (this.target.fcgi !== null) {
      return probeFcgi(
        this.target.fcgi,
        this.target.timeoutMs,
        this.target.expect,
        this.deps.fcgiGet,
        this.deps.clock.now,
        stop,
      );
    }
    return probeHttp(
      this.target.url,
      this.target.timeoutMs,
      this.target.expect,
      this.deps.httpGet,
      this.deps.clock.now,
      stop,
    );
  }

  /** Logs `message` as one line and, when `subject` is given, mails it with `details`. */
  event(
    level: "info" | "warn" | "error",
    message: string,
    subject: string | null,
    details: string[],
  ): void {
    logger[level]("{message}", { message, target: this.target.name });
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
      `Heartbeat: ${publicUrl(this.target.url)}`,
      `Probe: ${what} after ${result.ms} ms (timeout ${this.target.timeoutMs / 1000} s)`,
      ...(result.detail ? [`Detail: ${result.detail.split("\n")[0]}`] : []),
    ];
  }

  historyDetails(): string[] {
    return this.state.restarts.map((r) =>
      `Restart at ${new Date(r.at).toISOString()}: ${r.label}, ${
        r.ok ? "healthy again" : `failed: ${r.detail}`
      }`
    );
  }

  private readStatus(): Promise<PoolStatus | string> {
    const limit = Math.min(this.target.timeoutMs, STATUS_LIMIT_MS);
    return readStatus(this.target.status!, limit, this.deps.fcgiGet);
  }

  /**
   * After a timeout, tells an overloaded pool from a hung one with two status reads about a
   * second apart, instead of waiting for another timeout. Only when the status page has answered
   * before: a status URL that never worked proves nothing.
   */
  private async assessTimeout(
    result: ProbeResult,
    policy: Policy,
    stop?: AbortSignal,
  ): Promise<ProbeResult> {
    const first = await this.readStatus();
    let second = first;
    if (typeof first !== "string") {
      await this.deps.clock.sleep(Math.max(policy.confirmDelayMs, 500), stop);
      second = await this.readStatus();
    }
    this.lastStatus = { at: this.deps.clock.now(), status: second };
    if (typeof first === "string" && this.state.counters.pool === null) return result;
    if (typeof second !== "string") this.rememberCounters(second);
    const pool = assessPool(first, second, this.target.statusOnPool ? 1 : 0);
    logger.debug("Heartbeat timed out; the pool is {verdict}: {why}.", {
      verdict: pool.verdict,
      why: pool.why,
      target: this.target.name,
    });
    return { ...result, pool };
  }

  private rememberCounters(s: PoolStatus): void {
    this.state = { ...this.state, counters: countPool(this.state.counters, s) };
  }

  /** Reads the status page of a healthy pool and warns of what comes before an outage. */
  private async checkPool(): Promise<void> {
    const s = await this.readStatus();
    if (typeof s === "string") {
      logger.debug("Status page: {why}.", { why: s, target: this.target.name });
      return;
    }
    const previous = this.state.counters.pool;
    this.rememberCounters(s);
    if (previous === null) return;
    const now = this.deps.clock.now();
    for (const warning of warningsOf(previous, s, this.target.warn)) {
      const last = this.state.warnedAt[warning.kind];
      if (last !== undefined && now - last < this.target.warnEveryMs) continue;
      this.state = { ...this.state, warnedAt: { ...this.state.warnedAt, [warning.kind]: now } };
      const busy = s.workers.filter(isBusy).sort((a, b) => b.durationMs - a.durationMs);
      this.event("warn", `PHP pool warning: ${warning.message}.`, "PHP pool warning", [
        `Pool: ${poolLine(s)}`,
        ...busy.slice(0, 10).map((w) =>
          `  worker ${w.pid} ${w.state} for ${
            (w.durationMs / 1000).toFixed(1)
          } s: ${w.method} ${w.uri} (${w.script})`
        ),
        `Status page: ${describeFcgiTarget(this.target.status!)}${this.target.status!.path}`,
        "Nothing was restarted: this is an early warning.",
      ]);
    }
  }

  /** Adds what the status page says to a probe result (and warns early on healthy ones). */
  async withPoolView(result: ProbeResult, policy: Policy, stop?: AbortSignal) {
    if (this.target.status === null) return result;
    const verdict = verdictOf(result);
    if (verdict === "healthy") {
      await this.checkPool();
      return result;
    }
    if (verdict === "unreachable" || verdict === "misconfigured") {
      // nginx failed: is php-fpm behind it up? It tells the operator where to look
      const s = await this.readStatus();
      const fpm = typeof s === "string"
        ? { answers: false, detail: s }
        : { answers: true, detail: poolLine(s) };
      return { ...result, fpm };
    }
    const slow = result.kind === "timeout" || result.kind === "overloaded";
    const counts = this.deps.clock.now() >= this.state.graceUntil && this.state.givenUpAt === null;
    return slow && counts ? await this.assessTimeout(result, policy, stop) : result;
  }

  /** Restarts php-fpm (and php-cgi when asked); true when the heartbeat is healthy again. */
  async restart(first: ProbeResult, policy: Policy): Promise<boolean> {
    this.restarting = true;
    try {
      return await this.relaunchAndReport(first, policy);
    } finally {
      this.restarting = false;
    }
  }

  private async relaunchAndReport(first: ProbeResult, policy: Policy): Promise<boolean> {
    const { cfg, deps, target } = this;
    logger.debug("{label} PHP failed ({detail}); relaunching {service}.", {
      label: labelOf(first),
      detail: first.detail,
      service: target.fpm.service,
    });
    const ctx = {
      init: cfg.init,
      tools: cfg.tools,
      runner: deps.runner,
      clock: deps.clock,
      fs: deps.fs,
      options: this.options.relaunch ??
        { ...DEFAULT_RELAUNCH, startTimeoutMs: target.startTimeoutMs },
    };
    const since = this.state.incident?.since ?? this.state.failingSince ?? deps.clock.now();
    const evidence = await this.captureEvidence();
    const stuck = evidence.status === null
      ? []
      : stuckWorkers(evidence.status, target.stuckAfterMs).map((w) => w.pid);
    const reports: RelaunchReport[] = [
      await relaunch(
        {
          ...target.fpm,
          pidFile: target.pidFile,
          rungs: target.rungs,
          stuck,
          ...(target.status === null ? {} : {
            poolHasRoom: async () => {
              const s = await this.readStatus();
              return typeof s === "string" ? null : s.idle > 0;
            },
          }),
        },
        ctx,
        async () => verdictOf(await this.probe()) === "healthy",
      ),
    ];
    // php-cgi is a fallback behind the same heartbeat: its processes running is all we can check
    if (target.cgi !== null) {
      reports.push(
        await relaunch(
          { ...target.cgi, pidFile: null, rungs: ["kill"] },
          ctx,
          () => Promise.resolve(true),
        ),
      );
    }
    const failed = reports.filter((r) => !r.ok);
    const label = labelOf(first);
    const now = deps.clock.now();
    const why = failed.map((r) => `${r.service}: ${r.reason}`).join("; ");
    await this.recordIncident(first, evidence, reports[0]!);
    this.state = afterRestart(
      this.state,
      { at: now, ok: failed.length === 0, label, detail: why },
      policy,
    );
    this.state = {
      ...this.state,
      counters: countRestart(this.state.counters, failed.length === 0, now),
    };
    const details = [
      ...this.probeDetails(first),
      ...reports.flatMap((r) => [
        `Service ${r.service} (${cfg.init}): ${
          r.ok ? `running again after the ${r.rung} rung` : `FAILED: ${r.reason}`
        }; ${r.killed} processes killed, ${r.attempts} start attempts`,
        ...r.steps.map((step) => `  ${step}`),
      ]),
      `Restarts in the last ${
        seconds(policy.restartWindowMs)
      }: ${this.state.restarts.length} of at most ${policy.maxRestarts}`,
      "",
      "Before the restart:",
      ...(first.pool ? [`Pool judged ${first.pool.verdict}: ${first.pool.why}`] : []),
      ...evidenceLines(evidence),
    ];
    if (failed.length === 0) {
      details.push(`Down for ${seconds(now - since)} (since ${new Date(since).toISOString()})`);
      this.event("info", `${label} PHP restarted.`, "PHP restart", details);
      return true;
    }
    this.event("error", `${label} PHP restart failed (${why}).`, "PHP restart failed", details);
    return false;
  }

  private async captureEvidence(): Promise<Evidence> {
    const { target, deps } = this;
    const fresh = this.lastStatus !== null &&
      deps.clock.now() - this.lastStatus.at < STATUS_FRESH_MS &&
      typeof this.lastStatus.status !== "string";
    const known = fresh ? this.lastStatus!.status as PoolStatus : null;
    const source = {
      status: target.status,
      processName: target.fpm.processName,
      masterPid: await readPidFile(deps.fs, target.pidFile),
      fpmConfig: target.fpmConfig,
      listen: target.fcgi === null ? null : describeFcgiTarget(target.fcgi),
      tools: this.cfg.tools,
    };
    return await captureEvidence(source, deps, EVIDENCE_LIMIT_MS, known);
  }

  /** Appends the incident to the incident log; a failure is logged, never thrown. */
  private async recordIncident(
    first: ProbeResult,
    evidence: Evidence,
    report: RelaunchReport,
  ): Promise<void> {
    const path = incidentsPath(this.cfg.stateDir);
    const log = this.options.incidents ?? fileIncidentLog(path);
    try {
      await log.append({
        version: 1,
        at: this.deps.clock.now(),
        host: this.cfg.hostname,
        target: this.target.name,
        label: labelOf(first),
        pool: first.pool?.verdict ?? null,
        why: first.pool?.why ?? first.detail,
        evidence,
        restart: { ok: report.ok, rung: report.rung, steps: report.steps },
      });
    } catch (err) {
      logger.error("Cannot write the incident log {path}: {error}", {
        path,
        error: describeError(err),
        target: this.target.name,
      });
    }
  }

  /** Logs and mails what an alert action of the policy says. */
  alert(action: Extract<Action, { type: "alert" }>, result: ProbeResult, policy: Policy): void {
    const label = labelOf(result);
    const url = publicUrl(this.target.url);
    const incident: Incident = action.incident;
    switch (action.reason) {
      case "unreachable":
        this.event(
          "error",
          `${label} PHP not restarted: heartbeat ${url} unreachable (${
            result.kind === "dns" ? "host name does not resolve" : "connection refused"
          }); nginx or the address is down, and restarting php-fpm cannot help.${fpmSide(result)}`,
          "PHP heartbeat unreachable",
          this.probeDetails(result),
        );
        return;
      case "misconfigured":
        this.event(
          "error",
          `${label} PHP not restarted: heartbeat ${url} ${misconfigurationHint(result)}${
            fpmSide(result)
          }`,
          "PHP heartbeat misconfigured",
          this.probeDetails(result),
        );
        return;
      case "overloaded": {
        const s = this.lastStatus?.status;
        this.event(
          "warn",
          `${label} PHP overloaded, not restarted: ${
            result.pool?.why ?? "the pool still takes requests"
          }; a restart would drop the requests in flight.`,
          "PHP pool overloaded",
          [
            ...this.probeDetails(result),
            ...(s !== undefined && typeof s !== "string" ? [`Pool: ${poolLine(s)}`] : []),
            'Set on_overload = "restart" to restart an overloaded pool anyway.',
          ],
        );
        return;
      }
      case "gave_up":
        this.state = { ...this.state, counters: countGiveUp(this.state.counters) };
        this.event(
          "error",
          `${label} PHP not restarted: ${this.state.restarts.length} restarts in ${
            seconds(policy.restartWindowMs)
          } did not keep it up; giving up until it is healthy for ${
            seconds(policy.rearmAfterMs)
          }, SIGHUP or php-relaunch reset.`,
          "PHP restart given up",
          [
            ...this.probeDetails(result),
            `Failing since ${new Date(incident.since).toISOString()}`,
            ...this.historyDetails(),
          ],
        );
        return;
      case "reminder":
        this.event(
          "warn",
          `${label} PHP still failing since ${
            new Date(incident.since).toISOString()
          } (${incident.kind}).`,
          "PHP still failing",
          [...this.probeDetails(result), ...this.historyDetails()],
        );
        return;
      case "recovered":
        this.event(
          "info",
          `${label} PHP recovered after ${
            seconds(action.downtimeMs ?? 0)
          } (${incident.label} since ${new Date(incident.since).toISOString()}).`,
          "PHP recovered",
          [...this.probeDetails(result), `Restarts during the incident: ${incident.restarts}`],
        );
        return;
    }
  }

  /**
   * Probes once and carries out the policy's decision. Returns the verdict, whether the probe
   * asks for a quick confirmation, and when a restart ended (null when none was made).
   */
  async step(policy: Policy, stop?: AbortSignal): Promise<
    | { verdict: Verdict; confirm: boolean; restartEndedAt: number | null; restartOk: boolean }
    | null
  > {
    const probed = await this.probe(stop);
    // stopping: the probe was abandoned, and its result means nothing
    if (stop?.aborted) return null;
    logger.debug("Probe: {label} in {ms} ms.", { label: labelOf(probed), ms: probed.ms });
    this.state = {
      ...this.state,
      counters: countProbe(this.state.counters, verdictOf(probed), labelOf(probed), probed.ms),
    };
    const result = await this.withPoolView(probed, policy, stop);
    if (stop?.aborted) return null;
    return await this.carryOut(result, policy);
  }

  /** Decides what `result` calls for under `policy` and does it: log, alert, restart. */
  async carryOut(result: ProbeResult, policy: Policy): Promise<
    { verdict: Verdict; confirm: boolean; restartEndedAt: number | null; restartOk: boolean }
  > {
    const decision = decide(this.state, result, this.deps.clock.now(), policy);
    this.state = decision.state;
    let restartEndedAt: number | null = null;
    let restartOk = false;
    for (const action of decision.actions) {
      if (action.type === "log") logger[action.level]("{message}", { message: action.message });
      else if (action.type === "alert") this.alert(action, result, policy);
      else {
        restartOk = await this.restart(result, policy);
        restartEndedAt = this.deps.clock.now();
      }
    }
    return {
      verdict: verdictOf(result),
      confirm: decision.next === "confirm",
      restartEndedAt,
      restartOk,
    };
  }
}

/** What php-fpm's own status page said while nginx failed, as the end of a log line. */
function fpmSide(result: ProbeResult): string {
  if (result.fpm === undefined) return "";
  return result.fpm.answers
    ? ` php-fpm itself answers its status page (${result.fpm.detail}): the fault is nginx's.`
    : ` php-fpm does not answer its status page either (${result.fpm.detail}).`;
}

/** Says what a non-heartbeat answer probably means, for the operator to fix. */
export function misconfigurationHint(result: ProbeResult): string {
  if (result.kind === "closed") {
    return "closed the connection without answering: nginx's return 444? Allow this address in heartbeat_allowed.conf.";
  }
  if (result.kind === "unexpected" && result.via === "fcgi") {
    return `${result.detail}: check ping.path and ping.response in the pool, or set expect.`;
  }
  if (result.kind === "unexpected") {
    return `${result.detail}: the page answered, but not with the heartbeat (a PHP error page?); check the page and its logs, or set expect.`;
  }
  if (result.kind === "error" && result.via === "fcgi") {
    return `failed: ${result.detail}. Is this php-fpm's FastCGI socket (listen or pm.status_listen)?`;
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

/** The exit code for the last probe of a run. */
function exitFor(last: { verdict: Verdict; restartOk: boolean }): ExitCode {
  switch (last.verdict) {
    case "healthy":
      return ExitCode.Ok;
    case "php_down":
      return last.restartOk ? ExitCode.Ok : ExitCode.PhpDown;
    case "unreachable":
      return ExitCode.Unreachable;
    case "misconfigured":
      return ExitCode.Misconfigured;
  }
}

/** A target's watch, with its memory loaded from the store it will be saved to. */
export async function loadWatch(
  cfg: Config,
  target: Target,
  deps: Deps,
  options: MonitorOptions,
): Promise<{ watch: Watch; store: StateStore }> {
  const store = options.store ?? fileStateStore(target.stateFile);
  return { store, watch: new Watch(cfg, target, deps, options, await store.load()) };
}

/** The pauses of a target's policy, for nextDue; after a restart the grace period is waited. */
export function timingOf(policy: Policy): Timing {
  return {
    intervalMs: policy.intervalMs,
    confirmDelayMs: policy.confirmDelayMs,
    settleMs: policy.gracePeriodMs,
  };
}

/** The worst of several targets' exit codes: php-fpm down first, then nginx, then setup. */
export function worstExit(codes: readonly ExitCode[]): ExitCode {
  for (const code of [ExitCode.PhpDown, ExitCode.Unreachable, ExitCode.Misconfigured]) {
    if (codes.includes(code)) return code;
  }
  return codes.find((c) => c !== ExitCode.Ok) ?? ExitCode.Ok;
}

/**
 * Writes every target's metrics, from the state each has on disk (a target another run holds
 * is included as last saved). A failure is logged: metrics never change the run's outcome.
 */
export async function writeMetrics(
  cfg: Config,
  options: MonitorOptions,
  live: ReadonlyMap<string, Watch> = new Map(),
): Promise<void> {
  if (cfg.metricsFile === null) return;
  try {
    const targets = await Promise.all(cfg.targets.map(async (t) => ({
      name: t.name,
      counters: live.get(t.name)?.state.counters ??
        (await (options.store ?? fileStateStore(t.stateFile)).load()).counters,
    })));
    await writeMetricsFile(cfg.metricsFile, await renderMetrics(targets));
  } catch (err) {
    logger.error("Cannot write the metrics file {path}: {error}", {
      path: cfg.metricsFile,
      error: describeError(err),
    });
  }
}

/** Takes the target's lock, or says another run has it and returns null. */
async function lockTarget(target: Target, options: MonitorOptions) {
  const lock = await (options.lock ?? tryLock)(target.lockFile);
  if (lock === null) {
    logger.info("Another php-relaunch holds {lock}; this run does nothing.", {
      lock: target.lockFile,
      target: target.name,
    });
  }
  return lock;
}

/**
 * The cron form: probes every `timeout` seconds for one run period (a minute by default),
 * following the policy, with its memory kept on disk between runs. Stops at once, without
 * restarting, when nginx is unreachable or the heartbeat misconfigured. Several targets (from
 * the configuration file) are watched side by side; a target another run holds is skipped.
 */
export async function watchRun(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  await retryAlerts(cfg, deps, options);
  // the watches of this run, whose counters the metrics take without reading them back
  const live = new Map<string, Watch>();
  const codes = await Promise.all(cfg.targets.map(async (target) => {
    using lock = await lockTarget(target, options);
    return lock === null ? ExitCode.Ok : await watchTargetRun(cfg, target, deps, options, live);
  }));
  if (cfg.metricsFile !== null) await writeMetrics(cfg, options, live);
  return worstExit(codes);
}

async function watchTargetRun(
  cfg: Config,
  target: Target,
  deps: Deps,
  options: MonitorOptions,
  live: Map<string, Watch>,
): Promise<ExitCode> {
  const { watch, store } = await loadWatch(cfg, target, deps, options);
  live.set(target.name, watch);
  const run = { startedAt: deps.clock.now(), runMs: cfg.runMs };
  const timing = timingOf(target.policy);
  let dueAt = run.startedAt;
  let last: { verdict: Verdict; restartOk: boolean } = { verdict: "healthy", restartOk: false };
  try {
    while (true) {
      const step = await watch.step(target.policy);
      if (step === null) break;
      await store.save(watch.state);
      last = step;
      if (step.verdict === "unreachable" || step.verdict === "misconfigured") break;
      dueAt = nextDue({ dueAt, now: deps.clock.now(), ...step }, timing);
      if (!fitsInRun(dueAt, run, target.timeoutMs)) break;
      await deps.clock.sleep(dueAt - deps.clock.now());
    }
  } finally {
    await watch.alerts.flush();
  }
  return exitFor(last);
}

/**
 * `--once`: one probe of each target whose verdict is the exit code, no restart, no mail, no
 * change to the memory that cron runs share. With `--restart` a failure is acted on at once (the
 * caller has decided), under the target's lock and through the same memory, so flap protection
 * still holds.
 */
export async function probeOnce(
  cfg: Config,
  deps: Deps,
  options: MonitorOptions = {},
): Promise<ExitCode> {
  const codes: ExitCode[] = [];
  for (const target of cfg.targets) {
    if (!cfg.restartOnOnce) {
      codes.push(await checkTarget(cfg, target, deps));
      continue;
    }
    using lock = await lockTarget(target, options);
    if (lock !== null) codes.push(await restartTargetOnce(cfg, target, deps, options));
  }
  return worstExit(codes);
}

async function checkTarget(cfg: Config, target: Target, deps: Deps): Promise<ExitCode> {
  const watch = new Watch(cfg, target, deps, {}, freshState());
  const result = await watch.probe();
  const verdict = verdictOf(result);
  const label = labelOf(result);
  deps.stdout(`${label} ${verdict} in ${result.ms} ms: ${publicUrl(target.url)}\n`);
  if (verdict === "php_down") {
    logger.warn("{label} PHP down, not restarted (--once without --restart).", {
      label,
      target: target.name,
    });
  } else if (verdict !== "healthy") {
    logger.error("{label} PHP not restarted: heartbeat {url} {why}", {
      label,
      url: publicUrl(target.url),
      why: verdict === "unreachable"
        ? "unreachable; nginx or the address is down."
        : misconfigurationHint(result),
      target: target.name,
    });
  }
  return exitFor({ verdict, restartOk: false });
}

async function restartTargetOnce(
  cfg: Config,
  target: Target,
  deps: Deps,
  options: MonitorOptions,
): Promise<ExitCode> {
  const { watch, store } = await loadWatch(cfg, target, deps, options);
  const policy: Policy = { ...target.policy, failureThreshold: 1, timeoutThreshold: 1 };
  try {
    const result = await watch.probe();
    const verdict = verdictOf(result);
    deps.stdout(`${labelOf(result)} ${verdict} in ${result.ms} ms: ${publicUrl(target.url)}\n`);
    const { restartOk } = await watch.carryOut(result, policy);
    await store.save(watch.state);
    return exitFor({ verdict, restartOk });
  } finally {
    await watch.alerts.flush();
  }
}
