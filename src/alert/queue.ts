/**
 * alert/ owns telling people: the alert queue, mail, webhooks and the outbox of what could not
 * be delivered. It may import every stage but run/.
 *
 * This module: alerts: what they say, and their delivery to every channel (mail, webhook) in the
 * background, so that a slow or dead channel never delays a probe or a restart. What cannot be
 * delivered is queued in the outbox and retried on later runs.
 */
import type { Deps, MailRoute } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import {
  type AlertmanagerAlert,
  type Deliver,
  type Delivery,
  type Outbox,
  Undeliverable,
} from "./outbox.ts";
import { escapeControl, webhookName } from "../shared/redact.ts";

/**
 * The most one delivery may take, end to end, on any channel: a mail server that sends a line
 * every few seconds never trips SMTP's timeouts, which are per step. What is not delivered by
 * then goes to the outbox.
 */
export const DELIVERY_LIMIT_MS = 20_000;

/**
 * A firing alert tells Alertmanager it ends by itself this long after it was sent, unless it is
 * sent again: so a watchdog that dies does not leave it firing for ever. Repeats come every
 * {@link ALERTMANAGER_REPEAT_MS}, well within it (Prometheus sends every minute and holds 4).
 */
export const ALERTMANAGER_HOLD_MS = 4 * 60_000;
/** How often a firing incident is sent to Alertmanager again. */
export const ALERTMANAGER_REPEAT_MS = 60_000;

/** The incident an alert belongs to, so that receivers thread its alerts and close it. */
export interface AlertIncident {
  id: string;
  target: string;
  kind: string;
  status: "firing" | "resolved";
  since: number;
  /** When it ended; only when resolved. */
  endedAt?: number;
}

/** One alert to send: the subject's tail and the body lines after the log line. */
export interface Alert {
  /** Completes "<hostname> ...", e.g. "PHP restart". */
  subject: string;
  /** The log line that records the event. */
  line: string;
  /** Probe and restart details, one per line. */
  details: readonly string[];
  incident?: AlertIncident;
  /** Only Alertmanager's periodic resend of a firing incident; people were told already. */
  repeat?: boolean;
}

/** Where a target's alerts go. */
export interface AlertSettings {
  hostname: string;
  from: string;
  to: readonly string[];
  webhook: URL | null;
  /** Alertmanager's base URL, when incidents go there too. */
  alertmanager: URL | null;
  /** How mail leaves, for log lines ("localhost:25 (TLS auto)"). */
  via: string;
}

/** Alertmanager's alertname for each kind of incident. */
const ALERT_NAMES: Record<string, string> = {
  "php_down": "PhpFpmDown",
  unreachable: "PhpHeartbeatUnreachable",
  misconfigured: "PhpHeartbeatMisconfigured",
  overloaded: "PhpPoolOverloaded",
  "child_crashes": "PhpChildCrashes",
  upstream: "PhpUpstreamBlocked",
};

/**
 * The alert as Alertmanager's API v2 takes it. The incident id is a label: each incident is an
 * alert of its own, so a late "resolved" can never close the next incident.
 */
export function alertmanagerAlert(
  alert: Alert & { incident: AlertIncident },
  hostname: string,
  now: number,
): AlertmanagerAlert {
  const i = alert.incident;
  return {
    labels: {
      alertname: ALERT_NAMES[i.kind] ?? "PhpRelaunch",
      host: hostname,
      target: i.target,
      kind: i.kind,
      incident: i.id,
      severity: i.kind === "overloaded" ? "warning" : "critical",
    },
    annotations: {
      summary: `${hostname} ${alert.subject}`,
      description: [alert.line, ...alert.details].join("\n"),
    },
    startsAt: new Date(i.since).toISOString(),
    endsAt: new Date(
      i.status === "resolved" ? i.endedAt ?? now : now + ALERTMANAGER_HOLD_MS,
    ).toISOString(),
  };
}

/**
 * The deliveries of `alert`: a mail when there are recipients, a webhook POST when configured.
 * The webhook's address stays out of the delivery (it is queued on disk when it fails): it is
 * taken from the configuration when the POST is made. Every line is one line: a value echoed
 * from outside cannot add a header or a line of its own.
 */
export function deliveriesOf(given: Alert, s: AlertSettings, now: number): Delivery[] {
  const incident = given.incident;
  const alert = {
    subject: escapeControl(given.subject),
    line: escapeControl(given.line),
    details: [
      ...given.details.map(escapeControl),
      ...(incident === undefined ? [] : [
        `Incident: ${incident.id} (${incident.target}, ${incident.kind}, ${incident.status})`,
      ]),
    ],
  };
  const out: Delivery[] = [];
  if (s.alertmanager !== null && incident !== undefined) {
    out.push({
      channel: "alertmanager",
      alerts: [alertmanagerAlert({ ...alert, incident }, s.hostname, now)],
    });
  }
  if (given.repeat) return out;
  // the incident in the subject: mail clients and chat tools thread on it
  const subject = `${s.hostname} ${alert.subject}${
    incident === undefined ? "" : ` [${incident.target} #${incident.id}]`
  }`;
  if (s.to.length > 0) {
    out.push({
      channel: "mail",
      mail: {
        from: s.from,
        to: [...s.to],
        subject,
        text: [alert.line, "", ...alert.details, ""].join("\n"),
      },
    });
  }
  if (s.webhook !== null) {
    out.push({
      channel: "webhook",
      body: {
        // Slack, Mattermost and Rocket.Chat show `text` as markup: what came from outside (a
        // request URI, a script's name) goes in a code block, where none of them renders a link
        // or a mention; the fields stay exact
        text: `*${slackText(subject)}*\n${codeBlock([alert.line, ...alert.details])}`,
        host: s.hostname,
        subject,
        line: alert.line,
        details: alert.details,
        ...(incident === undefined ? {} : {
          "incident_id": incident.id,
          status: incident.status,
          target: incident.target,
          kind: incident.kind,
        }),
      },
    });
  }
  return out;
}

/**
 * `text` with `&`, `<` and `>` escaped as Slack asks (`<!channel>` and `<https://…|label>` are its
 * mentions and links).
 */
export function slackText(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/**
 * `lines` as a fenced code block of chat markup, shown as they are: Slack's escapes, and no
 * backquote that could end the block early (each becomes an apostrophe).
 */
export function codeBlock(lines: readonly string[]): string {
  return "```\n" + lines.map((l) => slackText(l).replaceAll("`", "'")).join("\n") + "\n```";
}

/** Where Alertmanager takes alerts, below its base URL (which may have a path prefix). */
export function alertmanagerEndpoint(base: URL): URL {
  return new URL(`${base.pathname.replace(/\/+$/, "")}/api/v2/alerts`, base);
}

/** Where the real channels deliver: as configured now, not as it was when an alert was queued. */
export interface ChannelSettings {
  mail: MailRoute;
  webhook: URL | null;
  alertmanager: URL | null;
}

/**
 * The real channels: mail by its route, webhooks and Alertmanager by POST to the URLs configured
 * now (a queued alert goes where the configuration says at retry time, or nowhere). Each delivery
 * ends within {@link DELIVERY_LIMIT_MS}, or when `signal` aborts, whatever the channel does.
 */
export function channels(
  deps: Pick<Deps, "mailer" | "webhookPost">,
  to: ChannelSettings,
  limitMs = DELIVERY_LIMIT_MS,
): Deliver {
  const deliver: Deliver = async (d, signal) => {
    if (d.channel === "mail") return await deps.mailer(d.mail, to.mail, signal);
    const [url, body, what] = d.channel === "webhook"
      ? [to.webhook, d.body, "the webhook"]
      : [to.alertmanager && alertmanagerEndpoint(to.alertmanager), d.alerts, "Alertmanager"];
    if (url === null) throw new Undeliverable(`no ${d.channel} is configured any more`);
    const status = await deps.webhookPost(url, JSON.stringify(body), signal);
    if (status < 200 || status > 299) throw new Error(`${what} answered HTTP ${status}`);
  };
  return (d, signal) => {
    const limited = AbortSignal.any([signal, AbortSignal.timeout(limitMs)]);
    return untilAborted(deliver(d, limited), limited, limitMs);
  };
}

/**
 * `work`, or its signal's reason as soon as it aborts: a channel that ignores the signal cannot
 * hold the caller (what it still does is ended by the signal where it can be).
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal, limitMs: number): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal, limitMs));
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortReason(signal, limitMs));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

/** Why a delivery was ended, in words for the outbox and the log. */
function abortReason(signal: AbortSignal, limitMs: number): Error {
  const reason = signal.reason;
  return reason instanceof DOMException && reason.name === "TimeoutError"
    ? new Error(`not delivered within ${limitMs / 1000} s`)
    : new Error("not delivered before php-relaunch stopped");
}

/**
 * Sends alerts in the background; a failed delivery is logged and queued in the outbox, never
 * thrown. Each delivery ends within {@link DELIVERY_LIMIT_MS}; {@link AlertQueue.flush} waits
 * for them, or ends those still under way after a grace and queues them.
 */
export class AlertQueue {
  readonly #pending = new Set<Promise<void>>();
  readonly #stop = new AbortController();

  constructor(
    private readonly deliver: Deliver,
    private readonly outbox: Outbox,
    private readonly settings: AlertSettings,
    private readonly now: () => number,
  ) {}

  /** True when no delivery is under way. */
  get idle(): boolean {
    return this.#pending.size === 0;
  }

  /** Queues `alert` for every channel; does nothing when there are none. */
  send(alert: Alert): void {
    for (const delivery of deliveriesOf(alert, this.settings, this.now())) {
      const attempt = this.#attempt(delivery).finally(() => this.#pending.delete(attempt));
      this.#pending.add(attempt);
    }
  }

  #describe(d: Delivery): string {
    if (d.channel === "mail") return `Mail to ${d.mail.to.join(",")} through ${this.settings.via}`;
    const url = d.channel === "webhook" ? this.settings.webhook : this.settings.alertmanager;
    return `${d.channel === "webhook" ? "Webhook" : "Alertmanager"} ${
      url === null ? "" : webhookName(url)
    }`;
  }

  async #attempt(delivery: Delivery): Promise<void> {
    try {
      // whatever the channel does with the signal, a stop ends the wait for it
      const stop = this.#stop.signal;
      await untilAborted(this.deliver(delivery, stop), stop, DELIVERY_LIMIT_MS);
      logger.debug("{what}: delivered.", { what: this.#describe(delivery) });
    } catch (err) {
      const error = describeError(err);
      logger.error("{what} failed, queued for the next run: {error}", {
        what: this.#describe(delivery),
        error,
      });
      try {
        await this.outbox.put({ delivery, queuedAt: this.now(), attempts: 1, lastError: error });
      } catch (err) {
        logger.error("Cannot queue the alert: {error}", { error: describeError(err) });
      }
    }
  }

  /**
   * Waits for every delivery to be done, or failed and queued: each within its own limit, or,
   * with `graceMs` (stopping), at most that long before those still under way are ended and
   * queued for the next run.
   */
  async flush(graceMs?: number): Promise<void> {
    const all = () => Promise.all([...this.#pending]).then(() => {});
    if (graceMs === undefined) return await all();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs));
    await Promise.race([all(), late]);
    clearTimeout(timer);
    this.#stop.abort();
    // ended, they are queued in the outbox: a moment's file write
    await all();
  }
}
