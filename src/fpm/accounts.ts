/**
 * The uid of the user a pool runs as, from /etc/passwd (root's): who besides root may own the
 * pool's logs. Read-only; an unknown name is null.
 */
import type { Fs } from "../shared/deps.ts";

const PASSWD = "/etc/passwd";
/** The most of /etc/passwd read: a host with thousands of users has a few hundred KiB. */
const MAX_PASSWD = 4 * 1024 * 1024;

/** The uid of user `name`, or null when /etc/passwd does not name it (or cannot be read). */
export async function uidOf(fs: Pick<Fs, "readTextFile">, name: string): Promise<number | null> {
  // php-fpm takes a uid as well as a name
  if (/^\d+$/.test(name)) return Number(name);
  let text: string;
  try {
    text = await fs.readTextFile(PASSWD, MAX_PASSWD);
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const [user, _password, uid] = line.split(":");
    if (user === name && uid !== undefined && /^\d+$/.test(uid)) return Number(uid);
  }
  return null;
}
