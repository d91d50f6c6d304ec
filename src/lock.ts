/** Single-instance runs: an exclusive `flock` on a lock file, held for the life of the process. */

/** A held lock; closing the file releases it (so does the process dying, even by SIGKILL). */
export interface HeldLock extends Disposable {
  readonly path: string;
}

/**
 * Takes the exclusive lock on `path` without waiting, creating the file if needed.
 * Returns null when another process holds it. The file is never deleted: deleting a lock file
 * lets two processes each lock a different inode.
 * @throws {Error} when the path is a symlink or not a regular file, or cannot be opened.
 */
export async function tryLock(path: string): Promise<HeldLock | null> {
  const existing = await Deno.lstat(path).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  });
  if (existing !== null && !existing.isFile) {
    throw new Error(
      `Refusing to use lock file "${path}": it is ${
        existing.isSymlink ? "a symbolic link" : "not a regular file"
      }`,
    );
  }
  // no truncate: opening never changes what is in the file
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  try {
    const opened = await file.stat();
    const now = await Deno.lstat(path);
    if (!now.isFile || now.ino !== opened.ino || now.dev !== opened.dev) {
      throw new Error(`Refusing to use lock file "${path}": it changed while being opened`);
    }
    if (!(await file.tryLock(true))) {
      file.close();
      return null;
    }
  } catch (err) {
    file.close();
    throw err;
  }
  return {
    path,
    [Symbol.dispose]() {
      file.close();
    },
  };
}
