/** Single-instance runs: an exclusive `flock` on a lock file, held for the life of the process. */
import { openRegularFile } from "./safe_file.ts";

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
  // no truncate: opening never changes what is in the file
  const file = await openRegularFile(
    path,
    { read: true, write: true, create: true, mode: 0o600 },
    "lock file",
  );
  try {
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
