/**
 * The pid file, cleared before an init script reads it. Debian's php8.2-fpm script (and OpenRC's
 * and FreeBSD's) finds "its" php-fpm by the pid file: a start that finds it naming a live process
 * of the same program does nothing, a stop signals whatever it names. Debian's /run/php is
 * www-data's, who can point it at another php-fpm instance's master. So php-relaunch never asks
 * such an init script to stop php-fpm (it stops the master it found itself), and removes the pid
 * file before it asks for a start, when the master is gone. systemd tracks a service's main
 * process itself and needs none of it.
 */
import type { Fs } from "../shared/deps.ts";
import type { InitSystem } from "./service.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";

/** Whether `init` finds php-fpm by its pid file (every one but systemd). */
export function trustsPidFile(init: InitSystem): boolean {
  return init !== "systemd";
}

/**
 * Removes the pid file at `path` (null: none known), so that the init script's start cannot be
 * turned away by a pid file naming another php-fpm. Removing a name never follows a link. Never
 * throws: the start is tried all the same.
 */
export async function clearPidFile(fs: Pick<Fs, "removeName">, path: string | null): Promise<void> {
  if (path === null) return;
  try {
    await fs.removeName(path);
  } catch (err) {
    logger.warn("Cannot remove the pid file {path} before the start: {error}", {
      path,
      error: describeError(err),
    });
  }
}
