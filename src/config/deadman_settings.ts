/**
 * The dead-man's switch's settings: a push URL (healthchecks.io, Uptime Kuma) from
 * `--deadman-url`, `$PHP_RELAUNCH_DEADMAN_URL` or `[deadman] url`, and how often watch mode pings
 * it (`[deadman] every`). The URL's path is its secret: no message here shows more than its
 * scheme and host.
 */
import type { ConfigFile } from "./file.ts";
import { checkWebhook } from "./urls.ts";

/** Where php-relaunch says it is alive, and how often watch mode says so. */
export interface Deadman {
  /** The push URL; a run that ends in failure pings its failure form (see alert/deadman.ts). */
  readonly url: URL;
  /** Watch mode pings at least this often while its probe loops make progress. */
  readonly everyMs: number;
}

/** Watch mode's ping period when `[deadman] every` does not say: healthchecks.io's shortest. */
export const DEADMAN_EVERY_MS = 60_000;

/** What the URL is called in messages. */
const WHAT = "dead-man's switch";

/** Whether a ping last failed, and since when: beside the targets' state files. */
export function deadmanStatePath(stateDir: string): string {
  return `${stateDir}/deadman.json`;
}

/**
 * The dead-man's switch of the command line's or environment's URL (`given`, which wins) and the
 * file's `[deadman]` table; null when no URL is set.
 * @returns the switch, or the problems, each one line naming the key but never the URL's path.
 */
export function deadmanOf(
  given: string | undefined,
  file: ConfigFile | null,
  configPath: string | null,
): Deadman | null | string[] {
  const table = file?.deadman ?? {};
  const everyMs = table.every ?? DEADMAN_EVERY_MS;
  const value = given ?? table.url;
  if (value === undefined) {
    return table.every === undefined ? null : [
      `${configPath}: deadman.every: set without a URL: give [deadman] url, --deadman-url or $PHP_RELAUNCH_DEADMAN_URL`,
    ];
  }
  const url = checkWebhook(value, WHAT);
  if (typeof url !== "string") return Object.freeze({ url, everyMs });
  return [given === undefined ? `${configPath}: deadman.url: ${url}` : url];
}
