/**
 * A target's pause: a small file beside its state, written by `php-relaunch pause` and removed by
 * `resume` or by the first run that finds it expired. Every step reads it, so cron runs, mcron
 * runs and watch mode all honour a pause at their next probe, without a lock and without SIGHUP.
 */
import * as v from "valibot";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { readRegularText, writeFileAtomic } from "../shared/safe_file.ts";
import { parseJsonWith, timestamp } from "../shared/schema.ts";
import { pausePath } from "../config/settings.ts";

/** Who paused a target, why, and until when. */
export interface Pause {
  at: number;
  until: number;
  by: string;
  reason: string;
}

const line = v.pipe(v.string(), v.maxLength(200));

const pauseSchema = v.object({
  version: v.literal(1),
  at: timestamp,
  until: timestamp,
  by: line,
  reason: line,
});

/** A pause file is a few hundred bytes. */
const MAX_PAUSE_FILE = 4096;

/** A pause file's text as a pause, or why it is not one. */
export function parsePause(text: string): Pause | string {
  const parsed = parseJsonWith(pauseSchema, text, "not JSON");
  if (typeof parsed === "string") return parsed;
  const { version: _, ...pause } = parsed;
  return pause;
}

/**
 * The pause at `path`, or null when there is none. One that cannot be read is logged and treated
 * as none: a broken file must never keep the watchdog from acting.
 */
export async function readPause(path: string): Promise<Pause | null> {
  let text: string;
  try {
    text = await readRegularText(path, MAX_PAUSE_FILE);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    logger.warn("Cannot read pause file {path} ({error}): not paused.", {
      path,
      error: describeError(err),
    });
    return null;
  }
  const pause = parsePause(text);
  if (typeof pause !== "string") return pause;
  logger.warn("Pause file {path} is corrupt ({error}): not paused.", { path, error: pause });
  return null;
}

/** Writes `pause` at `path` (0600, atomically, never through a link); its folder must exist. */
export async function writePause(path: string, pause: Pause): Promise<void> {
  await writeFileAtomic(path, JSON.stringify({ version: 1, ...pause }) + "\n", 0o600);
}

/** Removes the pause at `path`; true when this call removed it (so its end is told once). */
export async function removePause(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Where targets' pauses are kept: files in the state folder, or memory in tests. */
export interface Pauses {
  read(name: string): Promise<Pause | null>;
  write(name: string, pause: Pause): Promise<void>;
  /** True when this call removed the pause. */
  remove(name: string): Promise<boolean>;
}

/** The pauses of the state folder `stateDir` (which must exist before a write). */
export function filePauses(stateDir: string): Pauses {
  return {
    read: (name) => readPause(pausePath(stateDir, name)),
    write: (name, pause) => writePause(pausePath(stateDir, name), pause),
    remove: (name) => removePause(pausePath(stateDir, name)),
  };
}

/** Pauses in memory, for tests. */
export function memoryPauses(): Pauses & { items: Map<string, Pause> } {
  const items = new Map<string, Pause>();
  return {
    items,
    read: (name) => Promise.resolve(items.get(name) ?? null),
    write: (name, pause) => Promise.resolve(void items.set(name, pause)),
    remove: (name) => Promise.resolve(items.delete(name)),
  };
}
