/**
 * Mail out through nodemailer: SMTP (opportunistic or required STARTTLS, implicit TLS, AUTH) or a
 * local sendmail. nodemailer is loaded only when a mail is sent.
 */
import type { Mail, Mailer, MailRoute } from "../shared/deps.ts";

/** Connection, greeting and socket limits: a dead mail server must not hold the watchdog up. */
const SMTP_TIMEOUT_MS = 10_000;

const LOOPBACK = /^(localhost|127(?:\.\d+){3}|::1|\[::1\])$/i;

/** nodemailer's SMTP options for a route (exported for its unit test: no secret is logged). */
export async function smtpOptions(route: Extract<MailRoute, { transport: "smtp" }>) {
  const ca = route.caFile === null ? undefined : await Deno.readTextFile(route.caFile);
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

/** Delivers `mail` by the route's transport; rejects with the server's or the program's reason. */
export const nodeMailer: Mailer = async (mail: Mail, route: MailRoute) => {
  try {
    await send(mail, route);
  } catch (err) {
    // nodemailer's errors carry the server's words, which may echo what we sent
    throw new Error(withoutPassword(err instanceof Error ? err.message : String(err), route));
  }
};

async function send(mail: Mail, route: MailRoute): Promise<void> {
  const { default: nodemailer } = await import("nodemailer");
  const transport = route.transport === "sendmail"
    ? nodemailer.createTransport({ sendmail: true, path: route.path, newline: "unix" })
    : nodemailer.createTransport(await smtpOptions(route));
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
}

/** Where mail goes, for people (never the password). */
export function describeRoute(route: MailRoute): string {
  if (route.transport === "sendmail") return `sendmail ${route.path}`;
  const auth = route.user === null ? "" : `, as ${route.user}`;
  return `${route.host}:${route.port} (TLS ${route.tls}${auth})`;
}
