/**
 * Alerts: what they say, and their delivery to every channel (mail, webhook) in the background,
 * so that a slow or dead channel never delays a probe or a restart. What cannot be delivered is
 * queued in the outbox and retried on later runs.
 */
import type { Deps, MailRoute } from "./deps.ts";
import { describeError } from "./errors.ts";
import { logger } from "./log.ts";
import type { Deliver, Delivery, Outbox } from "./outbox.ts";

/** How long a webhook may take. */
const WEBHOOK_TIMEOUT_MS = 10_000;

/** One alert to send: the subject's tail and the body lines after the log line. */
export interface Alert {
  /** Completes "<hostname> ...", e.g. "PHP restart". */
  subject: string;
  /** The log line that records the event. */
  line: string;
  /** Probe and restart details, one per line. */
  details: readonly string[];
}

/** Where a target's alerts go. */
export interface AlertSettings {
  hostname: string;
  from: string;
  to: readonly string[];
  webhook: URL | null;
  /** How mail leaves, for log lines ("localhost:25 (TLS auto)"). */
  via: string;
}

/** The deliveries of `alert`: a mail when there are recipients, a webhook POST when configured. */
export function deliveriesOf(alert: Alert, s: AlertSettings): Delivery[] {
  const subject = `${s.hostname} ${alert.subject}`;
  const out: Delivery[] = [];
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
      url: s.webhook.href,
      body: {
        // Slack, Mattermost and Rocket.Chat show `text`; other receivers have the fields
        text: `*${subject}*\n${alert.line}\n${alert.details.join("\n")}`,
        host: s.hostname,
        subject,
        line: alert.line,
        details: alert.details,
      },
    });
  }
  return out;
}

/**
 * A webhook for logs and check-config: its scheme and host only, since the path of a Slack-style
 * webhook is its secret.
 */
export function webhookName(url: string | URL): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}/…`;
}

/** The real channels: mail by `route`, webhooks by POST. */
export function channels(deps: Pick<Deps, "mailer" | "webhookPost">, route: MailRoute): Deliver {
  return async (d) => {
    if (d.channel === "mail") return await deps.mailer(d.mail, route);
    const status = await deps.webhookPost(
      new URL(d.url),
      JSON.stringify(d.body),
      AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
    );
    if (status < 200 || status > 299) throw new Error(`the webhook answered HTTP ${status}`);
  };
}

/**
 * Sends alerts in the background and waits for them only when the run ends. A failed delivery
 * is logged and queued in the outbox, never thrown.
 */
export class AlertQueue {
  readonly #pending: Promise<void>[] = [];

  constructor(
    private readonly deliver: Deliver,
    private readonly outbox: Outbox,
    private readonly settings: AlertSettings,
    private readonly now: () => number,
  ) {}

  /** Queues `alert` for every channel; does nothing when there are none. */
  send(alert: Alert): void {
    for (const delivery of deliveriesOf(alert, this.settings)) {
      this.#pending.push(this.#attempt(delivery));
    }
  }

  #describe(d: Delivery): string {
    return d.channel === "mail"
      ? `Mail to ${d.mail.to.join(",")} through ${this.settings.via}`
      : `Webhook ${webhookName(d.url)}`;
  }

  async #attempt(delivery: Delivery): Promise<void> {
    try {
      await this.deliver(delivery);
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

  /** Waits for every delivery to be done, or failed and queued. */
  async flush(): Promise<void> {
    await Promise.all(this.#pending.splice(0));
  }
}
