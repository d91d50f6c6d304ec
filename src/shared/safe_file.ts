/** Opening files as root without following a link planted at the path. */
import type { FileInfo } from "./deps.ts";
import { constants as fsConstants, type Stats } from "node:fs";
import { type FileHandle, open as openFile } from "node:fs/promises";
import { ConfigError } from "./errors.ts";

/**
 * Opens `path` with `options`, refusing a symbolic link or anything but a regular file, and
 * checking after the open that the path still names what was opened (a link swapped in between
 * the check and the open is caught). `what` names the file in errors ("log file", "lock file").
 * @throws {ConfigError} naming the path and the reason (the operator's to fix); other errors
 * of opening unchanged. The file is closed then.
 */
export async function openRegularFile(
  path: string,
  options: Deno.OpenOptions,
  what: string,
): Promise<Deno.FsFile> {
  const before = await Deno.lstat(path).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  });
  if (before !== null && !before.isFile) {
    const kind = before.isSymlink ? "a symbolic link" : "not a regular file";
    throw new ConfigError([`Refusing to use ${what} "${path}": it is ${kind}`]);
  }
  const file = await Deno.open(path, options);
  try {
    const opened = await file.stat();
    const after = await Deno.lstat(path);
    if (!after.isFile || after.ino !== opened.ino || after.dev !== opened.dev) {
      throw new ConfigError([`Refusing to use ${what} "${path}": it changed while being opened`]);
    }
  } catch (err) {
    file.close();
    throw err;
  }
  return file;
}

/**
 * Replaces `path` with `text` atomically: a temporary file beside it (created with O_EXCL, so a
 * link planted there is never followed; one left by a killed run is removed first), written,
 * synced, then renamed over `path`. A SIGKILL at any moment leaves the old file or the new one.
 * Renaming replaces a link at `path` itself rather than writing through it.
 */
export async function writeFileAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.remove(tmp).catch(() => {});
  const file = await Deno.open(tmp, { write: true, createNew: true, mode });
  try {
    let bytes = new TextEncoder().encode(text);
    while (bytes.length > 0) bytes = bytes.subarray(await file.write(bytes));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}

/** What {@link linkProblem} and {@link privateProblem} know of a path: `lstat`'s answer. */
type PathKind = Pick<FileInfo, "isFile" | "isDirectory" | "isSymlink" | "mode" | "uid">;

/** `lstat` of a path, or null when it does not exist. */
export type Lstat = (path: string) => Promise<PathKind | null>;

/**
 * Why `path` cannot be written by its spelling, or null: a symbolic link in it (a planted link
 * would send root's write elsewhere, and the folder that is really written is what counts), or a
 * part before the last that is not a folder. Parts that do not exist yet are created as spelled.
 * @throws what `lstat` throws, but for the parts the permissions keep us from seeing.
 */
export async function linkProblem(lstat: Lstat, path: string): Promise<string | null> {
  const parts = path.split("/").filter((p) => p !== "");
  let at = "";
  for (const [i, part] of parts.entries()) {
    at += `/${part}`;
    let info;
    try {
      info = await lstat(at);
    } catch (err) {
      // a folder above those the permissions let us use (/, /var): the system's, not a user's
      if (err instanceof Deno.errors.NotCapable) continue;
      throw err;
    }
    if (info === null) return null;
    if (info.isSymlink) {
      return i === parts.length - 1
        ? "it is a symbolic link"
        : `"${at}" is a symbolic link: name the real folder`;
    }
    if (i < parts.length - 1 && !info.isDirectory) return `"${at}" is not a folder`;
  }
  return null;
}

/** The owner a private file or folder must have: us (root, as a service). */
function ownerName(uid: number | null): string {
  return uid === 0 ? "root" : `uid ${uid}`;
}

/**
 * Why `info` cannot be a private folder (or, with `file`, a private file) of user `uid`, or null:
 * it must be what it should be, be owned by `uid` and let no group or other user write to it.
 * Otherwise another user could hold our lock or write our memory.
 */
export function privateProblem(
  info: PathKind,
  uid: number | null,
  kind: "folder" | "file",
): string | null {
  if (info.isSymlink) return "it is a symbolic link";
  if (kind === "folder" ? !info.isDirectory : !info.isFile) return `it is not a ${kind}`;
  if (uid !== null && info.uid !== uid) {
    return `it is owned by ${ownerName(info.uid)}, not ${ownerName(uid)}`;
  }
  if ((info.mode & 0o022) !== 0) {
    return `its mode ${info.mode.toString(8).padStart(4, "0")} lets others write to it`;
  }
  return null;
}

/**
 * Makes folder `dir` (mode 0700) when it is missing, then checks that it is ours alone.
 * @throws {ConfigError} naming the folder and why it is refused.
 */
export async function ensurePrivateDir(dir: string, what: string): Promise<void> {
  await Deno.mkdir(dir, { mode: 0o700 }).catch((err) => {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  });
  const info = await Deno.lstat(dir);
  const problem = privateProblem(
    { ...info, mode: (info.mode ?? 0) & 0o7777 },
    Deno.uid(),
    "folder",
  );
  if (problem !== null) throw new ConfigError([`Refusing ${what} "${dir}": ${problem}`]);
}

/** How a file is read: its size, and what it must be to be read at all. */
export interface ReadRules {
  /** The most read: a larger file is refused, or with `tail` only its end is read. */
  maxBytes: number;
  /**
   * Follow a link at the path, for root's own files (the configuration, php-fpm's in /etc). By
   * default a link is refused: a link planted by another user would send root's read elsewhere.
   */
  follow?: boolean;
  /**
   * The file's owner must be one of these uids, and it must have one name (a hard link another
   * user made to a root-only file would pass for the file itself), in folders only root can
   * change (see {@link folderProblem}): for files whose lines are shown to people.
   */
  owners?: readonly number[];
  /** Read the last `maxBytes` (from a line start) of a larger file instead of refusing it. */
  tail?: boolean;
  /** The most the open and the read together may take (default {@link READ_DEADLINE_MS}). */
  deadlineMs?: number;
}

/** How long reading one file may take: a local file takes microseconds, a hung NFS mount never ends. */
export const READ_DEADLINE_MS = 2000;

/**
 * O_NONBLOCK: a named pipe put in a file's place opens at once instead of waiting for a writer
 * for ever (it is refused after the open, by its kind). O_NOFOLLOW: Deno resolves a path through
 * its links to check it against --allow-read, so the flag is not enough on its own; the open file
 * is compared with what `lstat` saw instead.
 */
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY |
  fsConstants.O_NOFOLLOW;

/**
 * A regular file's text, read as {@link readRegularBytes} reads it.
 * @throws as {@link readRegularBytes}.
 */
export async function readRegularText(
  path: string,
  rules: number | ReadRules,
): Promise<string> {
  return new TextDecoder().decode(await readRegularBytes(path, rules));
}

/**
 * A regular file's bytes, at most `maxBytes` (a number, or {@link ReadRules}). Nothing about the
 * path can make it block: the kind of file is checked before it is opened (a named pipe, a device
 * or a socket is refused), it is opened without waiting for a writer, the open file must be the
 * one checked (a link or a pipe swapped in between is caught), and the whole read has a deadline.
 * @throws {Deno.errors.NotFound} when it does not exist; {@link Error} naming why it is refused,
 * is larger than allowed, grew while being read or did not answer in time.
 */
export async function readRegularBytes(
  path: string,
  rules: number | ReadRules,
): Promise<Uint8Array> {
  const r = typeof rules === "number" ? { maxBytes: rules } : rules;
  if (!r.follow) {
    const problem = await folderProblem(path, r.owners !== undefined);
    if (problem !== null) throw new Error(problem);
  }
  const info = r.follow ? await Deno.stat(path) : await Deno.lstat(path);
  const problem = fileProblem(info, r);
  if (problem !== null) throw new Error(problem);
  const ms = r.deadlineMs ?? READ_DEADLINE_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it was not read within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([readChecked(path, info, r), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Why a folder on the way to `path` cannot be trusted not to lead elsewhere, or null. A link
 * among its folders is followed only when only root could have made it (root's own, in a folder
 * only root may write: Debian's `/var/run`). With `rootsOnly` (a file whose lines are shown to
 * people), every folder must be one that only root can change: another user who can rename in
 * one can swap a folder and a link back and forth faster than any check, and have the open reach
 * a root-only file of the same name (a sticky folder, as /tmp, lets them rename only their own).
 */
async function folderProblem(path: string, rootsOnly: boolean): Promise<string | null> {
  const parts = path.split("/").filter((p) => p !== "");
  const folder = `/${parts.slice(0, -1).join("/")}`;
  // the logs shown to people are looked at every time (a quiet one is not read at all)
  if (!rootsOnly && rootsFolders.trusts(folder)) return null;
  let at = "";
  let parent: Deno.FileInfo | null = await Deno.lstat("/").catch(() => null);
  // every folder on the way only root can change: so it stays, and it is not looked at again soon
  let onlyRoots = parent !== null && rootsAlone(parent);
  for (const part of parts.slice(0, -1)) {
    const up = parent;
    at += `/${part}`;
    const info = await Deno.lstat(at).catch(() => null);
    parent = info;
    onlyRoots &&= info !== null && rootsAlone(info);
    // a folder the permissions hide (or gone): the read itself says so
    if (info === null) continue;
    const rootsFolder = up !== null && up.uid === 0 && ((up.mode ?? 0) & 0o022) === 0;
    if (info.isSymlink && !(info.uid === 0 && rootsFolder)) {
      return `"${at}" is a symbolic link another user could have made`;
    }
    if (rootsOnly && info.isDirectory && !changedOnlyByRoot(info)) {
      return `the folder "${at}" is one another user can change (uid ${info.uid}, mode ${
        ((info.mode ?? 0) & 0o7777).toString(8).padStart(4, "0")
      })`;
    }
  }
  if (onlyRoots && !rootsOnly) rootsFolders.trust(folder);
  return null;
}

/**
 * Folders found to be root's alone all the way from `/`, for a few seconds: only root could make
 * them lead elsewhere, so a watch probing every second need not `lstat` each part of each path it
 * reads again (a folder another user can change is looked at every time). Short, and on the
 * monotonic clock: a folder root hands to another user is looked at again within that.
 */
const rootsFolders = (() => {
  const until = new Map<string, number>();
  return {
    trusts: (folder: string) => (until.get(folder) ?? 0) > performance.now(),
    trust: (folder: string) => until.set(folder, performance.now() + TRUST_FOLDER_MS),
  };
})();

/** How long a folder found to be root's alone is trusted without looking again. */
export const TRUST_FOLDER_MS = 5000;

/** A folder of root's that neither its group nor others may write (a link is none). */
function rootsAlone(info: Deno.FileInfo): boolean {
  return info.isDirectory && info.uid === 0 && ((info.mode ?? 0) & 0o022) === 0;
}

/**
 * Whether only root can rename or replace what a folder holds: root's, and writable by no other
 * user, or sticky (then others rename only their own). Its group may write (Ubuntu's /var/log is
 * `root:syslog 0775`): a system group, not a pool's user.
 */
function changedOnlyByRoot(info: Deno.FileInfo): boolean {
  const mode = info.mode ?? 0;
  return info.uid === 0 && ((mode & 0o002) === 0 || (mode & 0o1000) !== 0);
}

/** Why what `lstat` (or `stat`) says of a file keeps it from being read, or null. */
function fileProblem(info: Deno.FileInfo, r: ReadRules): string | null {
  if (info.isSymlink) return "it is a symbolic link";
  if (!info.isFile) return "it is not a regular file";
  if (r.owners !== undefined) {
    if (info.uid === null || !r.owners.includes(info.uid)) {
      return `it is owned by uid ${info.uid}, not ${r.owners.map((u) => `uid ${u}`).join(" or ")}`;
    }
    if ((info.nlink ?? 1) > 1) return "it has other names (hard links)";
  }
  if (!r.tail && info.size > r.maxBytes) {
    return `it has ${info.size} bytes, more than the ${r.maxBytes} allowed`;
  }
  return null;
}

/**
 * Opens `path` with `flags` and checks that what was opened is the regular file `seen` describes
 * (a link or a pipe swapped in between is caught); the handle is the caller's to close.
 */
async function openChecked(
  path: string,
  seen: Deno.FileInfo,
  flags: number,
): Promise<{ handle: FileHandle; opened: Stats }> {
  let handle: FileHandle;
  try {
    handle = await openFile(path, flags);
  } catch (err) {
    throw (err as { code?: string }).code === "ENOENT"
      ? new Deno.errors.NotFound(`No such file: "${path}"`)
      : err;
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile() || opened.ino !== seen.ino || opened.dev !== seen.dev) {
      throw new Error("it changed while being opened");
    }
    return { handle, opened };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

/** Opens `path`, checks it is the file `seen` describes, and reads it under `r`'s limits. */
async function readChecked(path: string, seen: Deno.FileInfo, r: ReadRules): Promise<Uint8Array> {
  const { handle, opened } = await openChecked(
    path,
    seen,
    OPEN_FLAGS & (r.follow ? ~fsConstants.O_NOFOLLOW : ~0),
  );
  try {
    const size = opened.size;
    const start = r.tail ? Math.max(0, size - r.maxBytes) : 0;
    if (!r.tail && size > r.maxBytes) {
      throw new Error(`it has ${size} bytes, more than the ${r.maxBytes} allowed`);
    }
    // sized by the stat, plus one byte that tells a file that grew since
    const buffer = new Uint8Array(size - start + (r.tail ? 0 : 1));
    let at = 0;
    while (at < buffer.length) {
      const { bytesRead } = await handle.read(buffer, at, buffer.length - at, start + at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    if (!r.tail && at > size) throw new Error("it grew while being read");
    const bytes = buffer.subarray(0, at);
    if (start === 0) return bytes;
    // a cut first line is half a record: the tail starts at the next line
    const newline = bytes.indexOf(0x0a);
    return newline < 0 ? bytes.subarray(bytes.length) : bytes.subarray(newline + 1);
  } finally {
    await handle.close();
  }
}

/** What {@link readRegularFrom} read: whole lines, and where they are in which file. */
export interface LinesRead {
  /** Whole lines only (each ending in "\n"): a line still being written is left for later. */
  text: string;
  /** The byte offset the text starts at. */
  start: number;
  /** The byte offset after its last line: where the next read starts. */
  end: number;
  /** The file's inode number (null where the platform has none). */
  ino: number | null;
  /**
   * True when the read started over at the file's beginning: it is another file than `ino`
   * (rotated), or shorter than `from` (truncated).
   */
  restarted: boolean;
  /** Bytes left unread because more than `maxBytes` were new: only the newest are read. */
  skipped: number;
}

/**
 * A log another user may write, from byte `from` on, as {@link readRegularBytes} reads a file
 * (no link, no pipe, the owners and folders checked, a deadline): at most its newest `maxBytes`,
 * cut to whole lines. When the file is not the one of inode `ino`, or shorter than `from`, it is
 * read from its start.
 * @throws as {@link readRegularBytes}.
 */
export async function readRegularFrom(
  path: string,
  rules: ReadRules & { from: number; ino: number | null },
): Promise<LinesRead> {
  const problem = await folderProblem(path, rules.owners !== undefined);
  if (problem !== null) throw new Error(problem);
  const info = await Deno.lstat(path);
  const refused = fileProblem(info, { ...rules, tail: true });
  if (refused !== null) throw new Error(refused);
  const ms = rules.deadlineMs ?? READ_DEADLINE_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it was not read within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([readLinesChecked(path, info, rules), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function readLinesChecked(
  path: string,
  seen: Deno.FileInfo,
  r: ReadRules & { from: number; ino: number | null },
): Promise<LinesRead> {
  const { handle, opened } = await openChecked(path, seen, OPEN_FLAGS);
  try {
    const size = opened.size;
    const restarted = (r.ino !== null && opened.ino !== r.ino) || size < r.from;
    const from = restarted ? 0 : r.from;
    const start = Math.max(from, size - r.maxBytes);
    const buffer = new Uint8Array(size - start);
    let at = 0;
    while (at < buffer.length) {
      const { bytesRead } = await handle.read(buffer, at, buffer.length - at, start + at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    let bytes = buffer.subarray(0, at);
    let first = start;
    if (start > from) {
      // a cut first line is half a record: the newest lines start at the next one
      const newline = bytes.indexOf(0x0a);
      const cut = newline < 0 ? bytes.length : newline + 1;
      bytes = bytes.subarray(cut);
      first += cut;
    }
    // a line still being written is read whole by a later call; one longer than maxBytes never
    // ends within it, and is taken as it is, so the reader moves on
    const last = bytes.lastIndexOf(0x0a);
    const whole = last < 0 && bytes.length >= r.maxBytes ? bytes.length : last + 1;
    return {
      text: new TextDecoder().decode(bytes.subarray(0, whole)),
      start: first,
      end: first + whole,
      ino: opened.ino,
      restarted,
      skipped: first - from,
    };
  } finally {
    await handle.close();
  }
}
