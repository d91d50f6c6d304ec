/**
 * The policy's memory on disk, one JSON file per target in /var/lib/php-relaunch/, so that cron
 * runs share failure counts, restart history and giving up. Written atomically (temp file, fsync,
 * rename): a SIGKILL at any moment leaves the old state or the new one, never half of either.
 */
import * as v from "valibot";
import { keyPath } from "./schema.ts";
import { describeError } from "./errors.ts";
import { writeFileAtomic } from "./safe_file.ts";
import { logger } from "./log.ts";
import { freshState, type TargetState } from "./policy.ts";
import { freshCounters, LATENCY_BUCKETS } from "./metrics.ts";

const count = v.pipe(v.number(), v.integer(), v.minValue(0));

const incidentSchema = v.object({
  kind: v.picklist(["php_down", "unreachable", "misconfigured", "overloaded"]),
  since: v.number(),
  label: v.string(),
  restarts: count,
  lastAlertAt: v.nullable(v.number()),
});

const stateSchema = v.object({
  version: v.literal(1),
  failures: count,
  timeouts: count,
  failingSince: v.nullable(v.number()),
  successes: count,
  healthySince: v.nullable(v.number()),
  incident: v.nullable(incidentSchema),
  restarts: v.array(v.object({
    at: v.number(),
    ok: v.boolean(),
    label: v.string(),
    detail: v.string(),
  })),
  givenUpAt: v.nullable(v.number()),
  graceUntil: v.number(),
  // added with the status page: state files written before lack it
  warnedAt: v.optional(v.record(v.string(), v.number()), () => ({})),
  // counters that do not parse start again from zero, the rest of the state is kept
  counters: v.fallback(
    v.object({
      probes: v.record(v.string(), v.number()),
      latency: v.object({
        buckets: v.pipe(v.array(v.number()), v.length(LATENCY_BUCKETS.length)),
        sum: v.number(),
        count: v.number(),
      }),
      restarts: v.object({ ok: v.number(), failed: v.number() }),
      giveUps: v.number(),
      lastRestartAt: v.nullable(v.number()),
      pool: v.nullable(v.object({
        active: v.number(),
        idle: v.number(),
        total: v.number(),
        listenQueue: v.number(),
        maxChildrenReached: v.number(),
        slowRequests: v.number(),
        acceptedConn: v.number(),
      })),
    }),
    () => freshCounters(),
  ),
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
        const { version: _, ...state } = v.parse(stateSchema, JSON.parse(text));
        return state;
      } catch (err) {
        const issue: v.BaseIssue<unknown> | undefined = err instanceof v.ValiError
          ? err.issues[0]
          : undefined;
        logger.warn("State file {path} is corrupt ({error}): starting afresh.", {
          path,
          error: issue
            ? `${issue.message} at ${keyPath(issue.path) || "top level"}`
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
