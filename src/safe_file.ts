/** Opening files as root without following a link planted at the path. */
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
