/**
 * Following php-fpm's error log from where the last step stopped, without reading it again: a
 * file by its inode and byte offset (rotation and truncation start over at the new file's start,
 * after the rest of the rotated one), the journal by its cursor where php-fpm logs to syslog.
 */
import type { Fs, ProcessRunner } from "../shared/deps.ts";

/** Where the reading of a log file stopped. */
export interface FileCursor {
  path: string;
  /** The inode of the file read (null where the platform has none). */
  ino: number | null;
  /** The byte after the last whole line read. */
  offset: number;
}

/** The most read of a log in one step: a flood of lines is read from its newest ones. */
export const FOLLOW_MAX_BYTES = 512 * 1024;

/** What one read of a followed log gave. */
export interface Followed<C> {
  lines: string[];
  cursor: C;
  /** Something the operator should know (lines skipped, a log that cannot be read), or null. */
  note: string | null;
}

const linesOf = (text: string) => text.split("\n").filter((l) => l !== "");

/**
 * The whole lines added to `path` since `cursor`. Without a cursor (or of another path), the
 * log's present end is where the following starts: what came before is history, not news.
 * A file replaced by another (logrotate) is read from its start, after the rest of the old one
 * when it is at `path`.1 (its inode tells it). A log that cannot be read keeps the cursor.
 */
export async function followFile(
  fs: Pick<Fs, "info" | "readUntrustedFrom">,
  path: string,
  cursor: FileCursor | null,
  owners: readonly number[],
  maxBytes = FOLLOW_MAX_BYTES,
): Promise<Followed<FileCursor | null>> {
  if (cursor === null || cursor.path !== path) {
    const info = await fs.info(path).catch(() => null);
    if (info === null || !info.isFile) {
      return { lines: [], cursor: null, note: info === null ? null : "it is not a regular file" };
    }
    return { lines: [], cursor: { path, ino: info.ino ?? null, offset: info.size }, note: null };
  }
  // the file last read, not grown: nothing to open (a step every second reads a quiet log)
  const now = await fs.info(path).catch(() => null);
  if (now?.isFile && (now.ino ?? null) === cursor.ino && now.size === cursor.offset) {
    return { lines: [], cursor, note: null };
  }
  let read;
  try {
    read = await fs.readUntrustedFrom(path, {
      from: cursor.offset,
      ino: cursor.ino,
      maxBytes,
      owners,
    });
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "it does not exist" : String(
      err instanceof Error ? err.message : err,
    );
    return { lines: [], cursor, note: `${path} not read: ${why}` };
  }
  const lines: string[] = [];
  const notes: string[] = [];
  if (read.restarted && read.ino !== cursor.ino && cursor.ino !== null) {
    // rotated: what was written to the old file after the last read is at path.1
    lines.push(...await restOfRotated(fs, `${path}.1`, cursor, owners, maxBytes));
  }
  lines.push(...linesOf(read.text));
  if (read.skipped > 0) {
    notes.push(`${read.skipped} bytes of ${path} skipped: more were new than one read takes`);
  }
  return {
    lines,
    cursor: { path, ino: read.ino, offset: read.end },
    note: notes.length === 0 ? null : notes.join("; "),
  };
}

async function restOfRotated(
  fs: Pick<Fs, "readUntrustedFrom">,
  path: string,
  cursor: FileCursor,
  owners: readonly number[],
  maxBytes: number,
): Promise<string[]> {
  try {
    const old = await fs.readUntrustedFrom(path, {
      from: cursor.offset,
      ino: cursor.ino,
      maxBytes,
      owners,
    });
    // another file than the one followed (rotated twice since): its lines are not the news
    return old.restarted ? [] : linesOf(old.text);
  } catch {
    return [];
  }
}

/** Where the reading of the journal stopped: its cursor, or the second to start from. */
export interface JournalCursor {
  cursor: string | null;
  /** Seconds since the epoch: with no cursor yet, entries from then on. */
  sinceSec: number;
}

/** The most one journalctl call may take. */
const JOURNAL_TIMEOUT_MS = 5000;

/**
 * The php-fpm master's journal entries since `cursor` (`journalctl -o short-unix`, by the
 * processes' name: syslog.ident may be anything). Without a cursor, from now on.
 */
export async function followJournal(
  runner: ProcessRunner,
  journalctl: string,
  processName: string,
  cursor: JournalCursor | null,
  nowMs: number,
): Promise<Followed<JournalCursor>> {
  const now = Math.floor(nowMs / 1000);
  const at = cursor ?? { cursor: null, sinceSec: now };
  const from = at.cursor !== null ? [`--after-cursor=${at.cursor}`] : [`--since=@${at.sinceSec}`];
  let r;
  try {
    r = await runner.run(
      journalctl,
      [
        "-q",
        "--no-pager",
        "-o",
        "short-unix",
        "--show-cursor",
        ...from,
        `_COMM=${processName.slice(0, 15)}`,
      ],
      { timeoutMs: JOURNAL_TIMEOUT_MS, tailBytes: FOLLOW_MAX_BYTES },
    );
  } catch (err) {
    return { lines: [], cursor: at, note: `journalctl did not run: ${String(err)}` };
  }
  if (r.code !== 0) {
    return {
      lines: [],
      cursor: at,
      note: `journalctl exited ${r.timedOut ? "at its timeout" : r.code}: ${
        r.stderr.split("\n")[0] ?? ""
      }`,
    };
  }
  const all = linesOf(r.stdout);
  const mark = all.findLast((l) => l.startsWith("-- cursor: "));
  const lines = all.filter((l) => !l.startsWith("-- "));
  // no entry since: the cursor stays, or the second it began
  const next = mark !== undefined
    ? { cursor: mark.slice("-- cursor: ".length).trim(), sinceSec: now }
    : at;
  return { lines, cursor: next, note: null };
}
