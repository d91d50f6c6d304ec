/** Single-instance runs: an exclusive `flock` on a lock file, held for the life of the process. */
import { dirname } from "node:path";
import { ConfigError } from "./errors.ts";
import { ensurePrivateDir, openRegularFile, privateProblem } from "./safe_file.ts";

/** A held lock; closing the file releases it (so does the process dying, even by SIGKILL). */
export interface HeldLock extends Disposable {
  readonly path: string;
}

/** Takes a lock without waiting: {@link tryLock}, or a fake in tests. */
export type TryLock = (path: string) => Promise<HeldLock | null>;

/**
 * Takes the exclusive lock on `path` without waiting, creating the file (and its folder, mode
 * 0700) if needed. Returns null when another process holds it. The file is never deleted:
 * deleting a lock file lets two processes each lock a different inode. A folder or file that
 * another user could have made or could write is refused: whoever made the file first could hold
 * its lock for good, and silence us.
 * @throws {ConfigError} when the folder or file is a symlink, not ours or writable by others;
 * other errors of opening unchanged.
 */
export async function tryLock(path: string): Promise<HeldLock | null> {
  await ensurePrivateDir(dirname(path), "lock folder");
  // no truncate: opening never changes what is in the file
  const file = await openRegularFile(
    path,
    { read: true, write: true, create: true, mode: 0o600 },
    "lock file",
  );
  try {
    const info = await file.stat();
    const problem = privateProblem(
      { ...info, isSymlink: false, mode: (info.mode ?? 0) & 0o7777 },
      Deno.uid(),
      "file",
    );
    if (problem !== null) throw new ConfigError([`Refusing lock file "${path}": ${problem}`]);
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
