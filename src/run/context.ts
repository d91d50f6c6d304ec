/**
 * What the parts of one target's watch share (its settings, its memory, the last pool view), and
 * the options tests use to shorten and replace what a run touches.
 */
import { fileOutbox, type Outbox } from "../alert/outbox.ts";
import type { RelaunchOptions } from "../act/restart.ts";
import { type Config, incidentsPath, outboxPath, type Target } from "../config/settings.ts";
import type { PoolStatus } from "../fpm/status_page.ts";
import { fileIncidentLog, type IncidentLog, type IncidentRecord } from "../record/incidents.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import type { Deps } from "../shared/deps.ts";
import type { TryLock } from "../shared/lock.ts";
import type { Memory, StateStore } from "./state.ts";
import { filePauses, type Pauses } from "./pause_file.ts";
import type { FleetLink } from "./fleet.ts";
import type { TargetDrain } from "./drain.ts";

/** Tuning that tests shorten, and the state store they replace; production uses the defaults. */
export interface MonitorOptions {
  relaunch?: RelaunchOptions;
  store?: StateStore;
  /** Where incidents are recorded; by default the state folder's incidents.jsonl. */
  incidents?: IncidentLog;
  /** Where undelivered alerts wait; by default the state folder's outbox/. */
  outbox?: Outbox;
  /** How a target's lock is taken; by default its lock file. */
  lock?: TryLock;
  /** Where pauses are read; by default the state folder's <target>.pause files. */
  pauses?: Pauses;
  /** The fleet's restart cap in etcd (watch mode with `[fleet]`); none by default. */
  fleet?: FleetLink | null;
}

/** What the parts of one target's watch share: its settings, its memory, the last pool view. */
export interface TargetContext {
  readonly cfg: Config;
  readonly target: Target;
  readonly deps: Deps;
  readonly options: MonitorOptions;
  readonly outbox: Outbox;
  /** The policy's state and the metrics' counters, saved after every step. */
  memory: Memory;
  /**
   * A cron run's period: a failure seen after its end is left to the next run (already due), and
   * no further restart attempt begins that could not end by `deadline`. Null in watch mode.
   */
  cronRun: { endsAt: number; deadline: number } | null;
  /** Saves the memory now, mid-step (a restart under way, for `status`); null: nowhere to. */
  save: (() => Promise<void>) | null;
  /** When the pool's memory was last read from the process table. */
  memoryReadAt?: number;
  /** When the process table was last read for the master (see master_watch.ts). */
  masterLookedAt?: number;
  /** When the pid file was last read while every probe answered. */
  pidFileReadAt?: number;
  /** The master's exit was seen (its exit watch fired): the next step looks for the master. */
  masterExited?: boolean;
  /** Whether two masters of one configuration were said already. */
  toldMasters?: boolean;
  /** The unix socket each pool listens on, by the pool's name, once looked up (null: not one). */
  readonly listenSockets: Map<string, string | null>;
  /** The last status read by the hang check, reused as evidence when fresh. */
  lastStatus: { at: number; status: PoolStatus | string } | null;
  /** What HAProxy's agent-check says of this target (watch mode with `[balancer]`). */
  drain?: TargetDrain;
}

/** Appends to the target's incident log; a failure is logged, never thrown. */
export async function logIncident(ctx: TargetContext, record: IncidentRecord): Promise<void> {
  const path = incidentsPath(ctx.cfg.stateDir);
  try {
    await (ctx.options.incidents ?? fileIncidentLog(path)).append(record);
  } catch (err) {
    logger.error("Cannot write the incident log {path}: {error}", {
      path,
      error: describeError(err),
      target: ctx.target.name,
    });
  }
}

/** Where targets' pauses are. */
export function pausesOf(cfg: Config, options: MonitorOptions): Pauses {
  return options.pauses ?? filePauses(cfg.stateDir);
}

/** The outbox of undelivered alerts. */
export function outboxOf(cfg: Config, options: MonitorOptions): Outbox {
  return options.outbox ?? fileOutbox(outboxPath(cfg.stateDir));
}
