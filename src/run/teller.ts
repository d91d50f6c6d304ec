/**
 * Telling: each event as one log line and, when it matters, an alert to every channel; and the
 * metrics' counters, kept beside the policy's state. The prober, the responder and the target's
 * loop all tell through one teller.
 */
import { describeRoute } from "../alert/mail.ts";
import {
  type AlertIncident,
  ALERTMANAGER_REPEAT_MS,
  AlertQueue,
  channels,
} from "../alert/queue.ts";
import type { Policy } from "../config/policy_settings.ts";
import { publicUrl } from "../shared/redact.ts";
import { formatLine, logger } from "../shared/log.ts";
import { poolLine } from "../fpm/status_page.ts";
import type { ProbeResult } from "../probe/result.ts";
import { labelOf } from "../probe/result.ts";
import { countGiveUp } from "../record/metrics.ts";
import { type Action, counted, type Incident } from "./recovery_policy.ts";
import type { TargetContext } from "./context.ts";

/** How many seconds, for people. */
export function seconds(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

/** The incident an alert is about, and whether the alert opens or continues it, or closes it. */
export interface Thread {
  incident: Incident;
  status: "firing" | "resolved";
}

/** A target's voice: log lines, alerts, and the details they carry. */
export class Teller {
  readonly alerts: AlertQueue;

  constructor(private readonly ctx: TargetContext) {
    const { cfg, target, deps } = ctx;
    this.alerts = new AlertQueue(
      channels(deps, cfg),
      ctx.outbox,
      {
        hostname: cfg.hostname,
        from: cfg.mailFrom,
        to: target.mailTo,
        webhook: cfg.webhook,
        alertmanager: cfg.alertmanager,
        via: describeRoute(cfg.mail),
      },
      deps.clock.now,
    );
  }

  /**
   * Logs `message` as one line and, when `subject` is given, alerts with `details`, as part of
   * `thread` (by default the open incident, firing).
   */
  event(
    level: "info" | "warn" | "error",
    message: string,
    subject: string | null,
    details: string[],
    thread: Thread | null = this.openThread(),
  ): void {
    const { cfg, target, deps } = this.ctx;
    logger[level]("{message}", { message, target: target.name });
    if (subject === null) return;
    const now = deps.clock.now();
    this.alerts.send({
      subject,
      line: formatLine(now, cfg.hostname, message),
      details,
      ...(thread === null ? {} : { incident: this.alertIncident(thread, now) }),
    });
    if (thread !== null) this.ctx.memory.alertmanagerAt = now;
  }

  private openThread(): Thread | null {
    const incident = this.ctx.memory.state.incident;
    return incident === null ? null : { incident, status: "firing" };
  }

  private alertIncident({ incident, status }: Thread, now: number): AlertIncident {
    return {
      id: incident.id,
      target: this.ctx.target.name,
      kind: incident.kind,
      status,
      since: incident.since,
      ...(status === "resolved" ? { endedAt: now } : {}),
    };
  }

  /**
   * Sends the open incident to Alertmanager again when it was last sent a while ago: a firing
   * alert there ends by itself unless it is repeated. People are not told again.
   */
  repeatOpenIncident(): void {
    const { cfg, deps, memory } = this.ctx;
    const incident = memory.state.incident;
    const now = deps.clock.now();
    if (cfg.alertmanager === null || incident === null) return;
    if (memory.alertmanagerAt !== null && now - memory.alertmanagerAt < ALERTMANAGER_REPEAT_MS) {
      return;
    }
    memory.alertmanagerAt = now;
    this.alerts.send({
      subject: incident.kind === "php_down" ? "PHP still failing" : `PHP ${incident.kind}`,
      line: formatLine(
        now,
        cfg.hostname,
        `${incident.label} ${incident.kind} since ${new Date(incident.since).toISOString()}.`,
      ),
      details: this.historyDetails(),
      incident: this.alertIncident({ incident, status: "firing" }, now),
      repeat: true,
    });
  }

  /** The probe's lines in an alert; `url`: a pool's heartbeat, by default the target's. */
  probeDetails(result: ProbeResult, url: URL = this.ctx.target.url): string[] {
    const { target } = this.ctx;
    const what = result.kind === "status" ? `HTTP ${result.status}` : result.kind;
    return [
      `Heartbeat: ${publicUrl(url)}`,
      `Probe: ${what} after ${result.ms} ms (timeout ${target.timeoutMs / 1000} s)`,
      ...(result.detail ? [`Detail: ${result.detail.split("\n")[0]}`] : []),
      ...(result.certain ? [`Certain ${result.certain.kind}: ${result.certain.why}`] : []),
    ];
  }

  historyDetails(): string[] {
    return this.ctx.memory.state.restarts.map((r) =>
      `Restart at ${new Date(r.at).toISOString()}: ${r.label}, ${
        r.ok ? "healthy again" : `failed: ${r.detail}`
      }`
    );
  }

  /** Logs and alerts what an alert action of the policy says. */
  alert(action: Extract<Action, { type: "alert" }>, result: ProbeResult, policy: Policy): void {
    const { memory, target } = this.ctx;
    const label = labelOf(result);
    const url = publicUrl(target.url);
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
        const s = this.ctx.lastStatus?.status;
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
        memory.counters = countGiveUp(memory.counters);
        this.event(
          "error",
          `${label} PHP not restarted: ${counted(memory.state.restarts).length} restarts in ${
            seconds(policy.restartWindowMs)
          } did not keep it up; giving up until it is healthy for ${
            seconds(policy.rearmAfterMs)
          }, SIGHUP or php-relaunch reset; ${
            memory.state.retryAt === null
              ? "no retries (retry_after = [])"
              : `next single attempt at ${new Date(memory.state.retryAt).toISOString()}`
          }.`,
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
          [
            ...this.probeDetails(result),
            `Restarts during the incident: ${incident.restarts}`,
            ...(incident.peer === undefined ? [] : [
              `Workers were blocked on ${incident.peer}; kill rounds: ${incident.kills ?? 0}`,
            ]),
          ],
          { incident, status: "resolved" },
        );
        return;
      case "upstream_over":
        this.event(
          "warn",
          `${label} PHP upstream incident over: the workers no longer wait on ${incident.peer}, yet php-fpm still fails; it is handled as a failure again.`,
          "PHP upstream over",
          [
            ...this.probeDetails(result),
            `Blocked since ${new Date(incident.since).toISOString()}; kill rounds: ${
              incident.kills ?? 0
            }`,
          ],
          { incident, status: "resolved" },
        );
        return;
    }
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
  if (result.kind === "impostor") {
    return `failed, and ${result.detail}: not restarted (a restart cannot mend what another user did at php-fpm's socket path, and would cut every pool of the service). Remove it (end that process), then restart php-fpm; keep php-fpm's sockets in a folder only root may write.`;
  }
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
