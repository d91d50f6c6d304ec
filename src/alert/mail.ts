/**
 * Mail out through nodemailer: SMTP (opportunistic or required STARTTLS, implicit TLS, AUTH) or a
 * local sendmail. nodemailer is loaded only when a mail is sent. Every mail ends when the caller's
 * signal aborts: SMTP's timeouts are per step, and a server that sends a line every few seconds
 * would never trip them.
 */
import { realRunner } from "../act/process.ts";
import type { Mail, Mailer, MailRoute } from "../shared/deps.ts";
import { readRegularText } from "../shared/safe_file.ts";

/** Connection, greeting and socket limits: a dead mail server must not hold the watchdog up. */
const SMTP_TIMEOUT_MS = 10_000;

/** How long an ended connection waits for the server to close its side. */
const SOCKET_CLOSE_MS = 1000;

const LOOPBACK = /^(localhost|127(?:\.\d+){3}|::1|\[::1\])$/i;

/** nodemailer's SMTP options for a route (exported for its unit test: no secret is logged). */
export async function smtpOptions(route: Extract<MailRoute, { transport: "smtp" }>) {
  const ca = route.caFile === null
    ? undefined
    : await readRegularText(route.caFile, { maxBytes: 1024 * 1024, follow: true });
  return {
    host: route.host,
    port: route.port,
    // "tls" is TLS from the first byte (port 465); the others start plain
    secure: route.tls === "tls",
    requireTLS: route.tls === "starttls",
    // on loopback a local MTA's TLS protects nothing, and its certificate is usually self-signed
    ignoreTLS: route.tls === "none" || (route.tls === "auto" && LOOPBACK.test(route.host)),
    ...(route.user !== null
      ? { auth: { type: "login" as const, user: route.user, pass: route.password ?? "" } }
      : {}),
    ...(ca ? { tls: { ca } } : {}),
    connectionTimeout: SMTP_TIMEOUT_MS,
    greetingTimeout: SMTP_TIMEOUT_MS,
    socketTimeout: SMTP_TIMEOUT_MS,
    // a connection ended (delivered, failed, or past its deadline) is gone within a second,
    // whether or not the server closes its side
    socketCloseTimeout: SOCKET_CLOSE_MS,
  };
}

/**
 * `message` without the password in any form AUTH sends it (as is, base64 alone for LOGIN,
 * base64 with the user for PLAIN): a server's reply is echoed in errors, and errors are logged.
 */
export function withoutPassword(message: string, route: MailRoute): string {
  if (route.transport !== "smtp" || !route.password) return message;
  const b64 = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
  const forms = [
    route.password,
    b64(route.password),
    b64(`\0${route.user ?? ""}\0${route.password}`),
    b64(`${route.user ?? ""}\0${route.user ?? ""}\0${route.password}`),
  ];
  return forms.reduce((text, form) => text.split(form).join("[password]"), message);
}

/**
 * Delivers `mail` by the route's transport; rejects with the server's or the program's reason,
 * or at once when `signal` aborts (the connection closed, sendmail ended).
 */
export const nodeMailer: Mailer = async (mail, route, signal) => {
  try {
    signal?.throwIfAborted();
    await (route.transport === "sendmail"
      ? viaSendmail(mail, route.path, signal)
      : viaSmtp(mail, route, signal));
  } catch (err) {
    // nodemailer's errors carry the server's words, which may echo what we sent
    throw new Error(withoutPassword(err instanceof Error ? err.message : String(err), route));
  }
};

async function viaSmtp(
  mail: Mail,
  route: Extract<MailRoute, { transport: "smtp" }>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { default: nodemailer } = await import("nodemailer");
  const transport = nodemailer.createTransport(await smtpOptions(route));
  try {
    // nodemailer closes the connection when the signal aborts
    await transport.sendMail({ ...message(mail), ...(signal ? { signal } : {}) });
  } finally {
    transport.close();
  }
}

/** How long sendmail may take to queue a mail. */
const SENDMAIL_TIMEOUT_MS = 20_000;

/**
 * The message written by nodemailer (MIME, headers, encodings) and handed to sendmail, run as
 * every command is: by its absolute path, an argument array, a deadline that ends its process
 * group. nodemailer's own sendmail transport waits for the program without one.
 */
async function viaSendmail(mail: Mail, path: string, signal?: AbortSignal): Promise<void> {
  const { default: nodemailer } = await import("nodemailer");
  const composer = nodemailer.createTransport({
    streamTransport: true,
    buffer: true,
    newline: "unix",
  });
  const composed = await composer.sendMail(message(mail));
  const envelope = composed.envelope as { from: string; to: string[] };
  // "--": no address can be read as an option
  const args = ["-i", "-f", envelope.from, "--", ...envelope.to];
  const r = await realRunner.run(path, args, {
    timeoutMs: SENDMAIL_TIMEOUT_MS,
    stdin: new Uint8Array(composed.message as Uint8Array),
    ...(signal ? { signal } : {}),
  });
  signal?.throwIfAborted();
  if (r.timedOut) throw new Error(`sendmail did not finish within ${SENDMAIL_TIMEOUT_MS} ms`);
  if (r.code !== 0) {
    throw new Error(`sendmail exited ${r.code}${r.stderr ? `: ${r.stderr.split("\n")[0]}` : ""}`);
  }
}

function message(mail: Mail) {
  return { from: mail.from, to: [...mail.to], subject: mail.subject, text: mail.text };
}

/** Where mail goes, for people (never the password). */
export function describeRoute(route: MailRoute): string {
  if (route.transport === "sendmail") return `sendmail ${route.path}`;
  const auth = route.user === null ? "" : `, as ${route.user}`;
  return `${route.host}:${route.port} (TLS ${route.tls}${auth})`;
}
