/** Alert emails: what they say, and the real SMTP delivery through nodemailer. */
import type { Mail, Mailer, SmtpSettings } from "./deps.ts";
import { describeError } from "./errors.ts";
import { logger } from "./log.ts";

/** Connection, greeting and socket limits: a dead mail server must not hold the watchdog up. */
const SMTP_TIMEOUT_MS = 10_000;

const LOOPBACK = /^(localhost|127(?:\.\d+){3}|::1|\[::1\])$/i;

/** Delivers through SMTP with nodemailer, loaded only when a mail is actually sent. */
export const smtpMailer: Mailer = async (mail: Mail, smtp: SmtpSettings) => {
  const { default: nodemailer } = await import("nodemailer");
  const transport = nodemailer.createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: false,
    // a local MTA's certificate is usually self-signed; on loopback TLS protects nothing
    ignoreTLS: LOOPBACK.test(smtp.host),
    connectionTimeout: SMTP_TIMEOUT_MS,
    greetingTimeout: SMTP_TIMEOUT_MS,
    socketTimeout: SMTP_TIMEOUT_MS,
  });
  try {
    await transport.sendMail({
      from: mail.from,
      to: [...mail.to],
      subject: mail.subject,
      text: mail.text,
    });
  } finally {
    transport.close();
  }
};

/** One alert to send: the subject's tail and the body lines after the log line. */
export interface Alert {
  /** Completes "<hostname> ...", e.g. "PHP restart". */
  subject: string;
  /** The log line that records the event. */
  line: string;
  /** Probe and restart details, one per line. */
  details: readonly string[];
}

/**
 * Sends alerts in the background so that mail never delays a probe or a restart, and waits for
 * them only when the run ends. A failed mail is logged, never thrown.
 */
export class AlertQueue {
  readonly #pending: Promise<void>[] = [];

  constructor(
    private readonly mailer: Mailer,
    private readonly settings: {
      hostname: string;
      from: string;
      to: readonly string[];
      smtp: SmtpSettings;
    },
  ) {}

  /** Queues `alert` for every recipient; does nothing when there are none. */
  send(alert: Alert): void {
    if (this.settings.to.length === 0) return;
    const mail: Mail = {
      from: this.settings.from,
      to: this.settings.to,
      subject: `${this.settings.hostname} ${alert.subject}`,
      text: [alert.line, "", ...alert.details, ""].join("\n"),
    };
    const { host, port } = this.settings.smtp;
    this.#pending.push(
      this.mailer(mail, this.settings.smtp).then(
        () => logger.debug("Mailed {subject} to {to}.", { subject: mail.subject, to: mail.to }),
        (err) =>
          logger.error("Mail to {to} through {server} failed: {error}", {
            to: mail.to.join(","),
            server: `${host}:${port}`,
            error: describeError(err),
          }),
      ),
    );
  }

  /** Waits for every queued mail to be delivered or to fail. */
  async flush(): Promise<void> {
    await Promise.all(this.#pending.splice(0));
  }
}
