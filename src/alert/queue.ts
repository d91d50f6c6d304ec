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
import { type Deliver, type Delivery, type Outbox, Undeliverable } from "./outbox.ts";
import { escapeControl, webhookName } from "../shared/redact.ts";

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

/**
 * The deliveries of `alert`: a mail when there are recipients, a webhook POST when configured.
 * The webhook's address stays out of the delivery (it is queued on disk when it fails): it is
 * taken from the configuration when the POST is made. Every line is one line: a value echoed
 * from outside cannot add a header or a line of its own.
 */
export function deliveriesOf(given: Alert, s: AlertSettings): Delivery[] {
  const alert = {
    subject: escapeControl(given.subject),
    line: escapeControl(given.line),
    details: given.details.map(escapeControl),
  };
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
 * The real channels: mail by `route`, webhooks by POST to `webhook` as configured now (a queued
 * webhook alert goes where the configuration says at retry time, or nowhere).
 */
export function channels(
  deps: Pick<Deps, "mailer" | "webhookPost">,
  route: MailRoute,
  webhook: URL | null,
): Deliver {
  return async (d) => {
    if (d.channel === "mail") return await deps.mailer(d.mail, route);
    if (webhook === null) throw new Undeliverable("no webhook is configured any more");
    const status = await deps.webhookPost(
      webhook,
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
      : `Webhook ${this.settings.webhook === null ? "" : webhookName(this.settings.webhook)}`;
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
