/**
 * The policy's memory on disk, one JSON file per target in /var/lib/php-relaunch/, so that cron
 * runs share failure counts, restart history and giving up. Written atomically (temp file, fsync,
 * rename): a SIGKILL at any moment leaves the old state or the new one, never half of either.
 */
import { z } from "zod";
import { describeError } from "./errors.ts";
import { writeFileAtomic } from "./safe_file.ts";
import { logger } from "./log.ts";
import { freshState, type TargetState } from "./policy.ts";
import { freshCounters, LATENCY_BUCKETS } from "./metrics.ts";

const incidentSchema = z.object({
  kind: z.enum(["php_down", "unreachable", "misconfigured", "overloaded"]),
  since: z.number(),
  label: z.string(),
  restarts: z.number().int().nonnegative(),
  lastAlertAt: z.number().nullable(),
});

const stateSchema = z.object({
  version: z.literal(1),
  failures: z.number().int().nonnegative(),
  timeouts: z.number().int().nonnegative(),
  failingSince: z.number().nullable(),
  successes: z.number().int().nonnegative(),
  healthySince: z.number().nullable(),
  incident: incidentSchema.nullable(),
  restarts: z.array(z.object({
    at: z.number(),
    ok: z.boolean(),
    label: z.string(),
    detail: z.string(),
  })),
  givenUpAt: z.number().nullable(),
  graceUntil: z.number(),
  // added with the status page: state files written before lack it
  warnedAt: z.record(z.string(), z.number()).default({}),
  // counters that do not parse start again from zero, the rest of the state is kept
  counters: z.object({
    probes: z.record(z.string(), z.number()),
    latency: z.object({
      buckets: z.array(z.number()).length(LATENCY_BUCKETS.length),
      sum: z.number(),
      count: z.number(),
    }),
    restarts: z.object({ ok: z.number(), failed: z.number() }),
    giveUps: z.number(),
    lastRestartAt: z.number().nullable(),
    pool: z.object({
      active: z.number(),
      idle: z.number(),
      total: z.number(),
      listenQueue: z.number(),
      maxChildrenReached: z.number(),
      slowRequests: z.number(),
      acceptedConn: z.number(),
    }).nullable(),
  }).catch(() => freshCounters()),
});

/** Loads and saves one target's state. */
export interface StateStore {
  /** The saved state; a fresh one when there is none, or it cannot be read (logged). */
  load(): Promise<TargetState>;
  save(state: TargetState): Promise<void>;
}

/** A state store that keeps nothing: for `--once` checks that must not disturb cron runs. */
export function memoryStateStore(initial: TargetState = freshState()): StateStore {
  let state = initial;
  return {
    load: () => Promise.resolve(state),
    save: (next) => {
      state = next;
      return Promise.resolve();
    },
  };
}

/** The file of target `name` in `dir`. */
export function statePath(dir: string, name: string): string {
  return `${dir}/${name}.json`;
}

/** A store backed by `path`; its folder is created (mode 0700) when missing. */
export function fileStateStore(path: string): StateStore {
  return {
    async load() {
      let text: string;
      try {
        text = await Deno.readTextFile(path);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) {
          logger.warn("Cannot read state file {path} ({error}): starting afresh.", {
            path,
            error: describeError(err),
          });
        }
        return freshState();
      }
      try {
        const { version: _, ...state } = stateSchema.parse(JSON.parse(text));
        return state;
      } catch (err) {
        logger.warn("State file {path} is corrupt ({error}): starting afresh.", {
          path,
          error: err instanceof z.ZodError
            ? z.prettifyError(err).split("\n")[0]
            : describeError(err),
        });
        return freshState();
      }
    },
    async save(state) {
      const dir = path.slice(0, path.lastIndexOf("/")) || "/";
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      // the folder is root's (0700): a temporary file left in it by a killed run is ours
      await writeFileAtomic(path, JSON.stringify({ version: 1, ...state }) + "\n", 0o600);
    },
  };
}
