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
import type { ProbeResult } from "../probe/result.ts";
import { countGiveUp } from "../record/metrics.ts";
import type { Action, Incident } from "./recovery_policy.ts";
import { policyAlert } from "./policy_alerts.ts";
import type { TargetContext } from "./context.ts";

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
    const { memory } = this.ctx;
    if (action.reason === "gave_up") memory.counters = countGiveUp(memory.counters);
    const said = policyAlert(action, result, policy, this.ctx, {
      probe: this.probeDetails(result),
      history: this.historyDetails(),
    });
    const { level, message, subject, details } = said;
    if (said.resolves) {
      this.event(level, message, subject, details, {
        incident: action.incident,
        status: "resolved",
      });
    } else this.event(level, message, subject, details);
  }
}
