/** Opening files as root without following a link planted at the path. */
import type { FileInfo } from "./deps.ts";
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

/**
 * A regular file's text, at most `maxBytes`.
 * @throws {Error} when it is not a regular file (a folder, a device that never ends), is larger,
 * or grew while being read; errors of opening unchanged.
 */
export async function readRegularText(path: string, maxBytes: number): Promise<string> {
  return new TextDecoder().decode(await readRegularBytes(path, maxBytes));
}

/** A regular file's bytes, at most `maxBytes`; throws as {@link readRegularText} does. */
export async function readRegularBytes(path: string, maxBytes: number): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const info = await file.stat();
  if (!info.isFile) throw new Error("it is not a regular file");
  if (info.size > maxBytes) {
    throw new Error(`it has ${info.size} bytes, more than the ${maxBytes} allowed`);
  }
  // sized by the stat, plus one byte that tells a file that grew since
  const buffer = new Uint8Array(info.size + 1);
  let at = 0;
  while (at < buffer.length) {
    const n = await file.read(buffer.subarray(at));
    if (n === null) break;
    at += n;
  }
  if (at > info.size) throw new Error("it grew while being read");
  return buffer.subarray(0, at);
}
