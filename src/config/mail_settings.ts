/**
 * The mail route of the configuration: SMTP (host, port, TLS, AUTH with a password from the
 * environment or a root-only file) or a local sendmail, from flags, environment and file.
 */
import type { Deps, MailRoute } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import type { ConfigFile } from "./file.ts";
import type { Settings } from "./fields.ts";
import { ENV } from "./settings.ts";

const DEFAULT_SMTP_HOST = "localhost";
const DEFAULT_SMTP_PORT = 25;

/** Where sendmail may be: the run permission names exactly these. */
export const SENDMAIL_PATHS = [
  "/usr/sbin/sendmail",
  "/usr/lib/sendmail",
  "/usr/bin/sendmail",
  "/usr/local/sbin/sendmail",
] as const;
const DEFAULT_SENDMAIL = "/usr/sbin/sendmail";

/**
 * Reads a password file (`what`: "SMTP password file", "etcd password file"), which must be a
 * regular file that only its owner (root, when running as root) can read: a password readable by
 * others is refused, not used.
 */
export async function readPasswordFile(
  path: string,
  deps: Deps,
  isRoot: boolean,
  what = "SMTP password file",
): Promise<string> {
  if (!deps.host.allows("read", path)) {
    throw new Error(
      `Cannot read ${what} "${path}": php-relaunch's permissions do not let it read there; keep it in /etc/php-relaunch`,
    );
  }
  const info = await deps.fs.info(path);
  if (info === null) throw new Error(`Cannot read ${what} "${path}": it does not exist`);
  if (!info.isFile) {
    throw new Error(`Refusing ${what} "${path}": it is not a regular file`);
  }
  if ((info.mode & 0o077) !== 0) {
    throw new Error(
      `Refusing ${what} "${path}": mode ${
        info.mode.toString(8).padStart(4, "0")
      } lets others read it; chmod 600 it`,
    );
  }
  if (isRoot && info.uid !== 0) {
    throw new Error(`Refusing ${what} "${path}": it is not owned by root`);
  }
  const text = await deps.fs.readTextFile(path, 4096);
  return text.replace(/\r?\n$/, "");
}

/** The mail route from flags, environment and file; a sentence when it cannot be built. */
export async function mailRouteOf(
  s: Settings,
  file: ConfigFile | null,
  deps: Deps,
  isRoot: boolean,
): Promise<MailRoute | string> {
  const m = file?.mail ?? {};
  const transport = s.mailTransport ?? m.transport ?? "smtp";
  if (transport === "sendmail") {
    const path = m.sendmail ?? DEFAULT_SENDMAIL;
    if (!SENDMAIL_PATHS.some((p) => p === path)) {
      return `Cannot use sendmail "${path}": expected one of ${SENDMAIL_PATHS.join(", ")}`;
    }
    if (!(await deps.fs.isExecutable(path))) {
      return `Cannot find sendmail at "${path}": install a mail transfer agent (msmtp-mta, postfix) or use SMTP`;
    }
    return { transport, path };
  }
  const user = s.smtpUser ?? m.user ?? null;
  let password = deps.host.env(ENV.smtpPassword) ?? null;
  const passwordFile = s.smtpPasswordFile ?? m.password_file;
  if (passwordFile !== undefined) {
    try {
      password = await readPasswordFile(passwordFile, deps, isRoot);
    } catch (err) {
      return describeError(err);
    }
  }
  if (password !== null && user === null) {
    return "Cannot use an SMTP password without a user: give --smtp-user or [mail] user";
  }
  return {
    transport,
    host: s.smtpHost ?? m.smtp_host ?? DEFAULT_SMTP_HOST,
    port: s.smtpPort ?? m.smtp_port ?? DEFAULT_SMTP_PORT,
    tls: s.smtpTls ?? m.tls ?? "auto",
    user,
    password,
    caFile: m.ca_file ?? null,
  };
}
