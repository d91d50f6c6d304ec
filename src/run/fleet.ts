/**
 * The restart cap across the fleet, kept in etcd: each failing target has a lease-bound key
 * (`<prefix>failing/<host>/<target>`), a restart first takes a slot of etcd's semaphore recipe
 * (`<prefix>slots/<host>/<target>`, the oldest `max_concurrent_restarts` by create revision go),
 * and while more than `shared_cause_share` of the hosts fail, restarts are held and the one
 * watchdog that puts `<prefix>fleet-alert` first sends one "fleet-wide failure" alert.
 *
 * etcd only ever holds or lets go a restart of this watchdog's own target: nothing it says names
 * a process. When it cannot be reached, restarts go on as on a single server (said once in the
 * log, and once when it answers again).
 */
import type { FleetSettings } from "../config/fleet_settings.ts";
import type { Deps } from "../shared/deps.ts";
import { logger } from "../shared/log.ts";
import { FleetSession } from "./fleet_session.ts";
import { FleetAlert, type FleetTeller, type FleetView } from "./fleet_alert.ts";
import {
  failingHosts,
  fleetSize,
  holdsRestart,
  holdsSlot,
  hostsSaid,
  isSharedCause,
} from "./fleet_policy.ts";

export type { FleetTeller } from "./fleet_alert.ts";

export { ETCD_RETRY_MS } from "./fleet_session.ts";
/** How often a restart waiting for its slot looks again. */
export const SLOT_POLL_MS = 250;

/** What a restart asks of the fleet. */
export interface RestartAsk {
  /** The failure is certain (master gone, a certain hang): a shared cause never holds it. */
  certain: boolean;
  /** Stop or reload: the slot wait ends, the slot is let go, and the restart does not run. */
  signal?: AbortSignal | undefined;
}

/** The key of `target` of this host, of a kind: `<prefix>failing/<host>/<target>`. */
function keyOf(settings: FleetSettings, kind: "failing" | "slots", target: string): string {
  return `${settings.prefix}${kind}/${settings.host}/${target}`;
}

/** One watchdog's link to the fleet: its lease, its keys, and what it has said. */
export class FleetLink {
  private readonly etcd: FleetSession;
  /** Targets failing now. */
  private readonly failing = new Set<string>();
  private slots = 0;
  private readonly alert: FleetAlert;

  /** Targets whose restarts a shared cause holds: since when, and what was said of it. */
  private readonly holds = new Map<string, { since: number; said: boolean; over: boolean }>();

  constructor(readonly settings: FleetSettings, private readonly deps: Deps) {
    this.etcd = new FleetSession(settings, deps);
    this.alert = new FleetAlert(settings, deps, this.etcd);
  }

  /**
   * A target's verdict after its step: its failing key is put (failing) or deleted (healthy);
   * while something fails, or a fleet-wide alert is open, the fleet is looked at. Never throws.
   */
  async observe(target: string, failing: boolean, teller: FleetTeller): Promise<void> {
    if (failing) this.failing.add(target);
    else {
      this.failing.delete(target);
      this.holds.delete(target);
    }
    await this.etcd.ask(async () => {
      if (failing && !this.etcd.written.has(target)) {
        const id = await this.etcd.leaseId();
        await this.etcd.client.put(
          keyOf(this.settings, "failing", target),
          new Date(this.now()).toISOString(),
          id,
        );
        this.etcd.written.add(target);
      } else if (!failing && this.etcd.written.has(target)) {
        await this.etcd.client.delete(keyOf(this.settings, "failing", target));
        this.etcd.written.delete(target);
      }
      if (this.failing.size > 0 || this.alert.open) await this.look(teller);
      await this.letGoWhenIdle();
    });
  }

  /**
   * Runs `work` (the target's restart) when the fleet allows it: not while a shared cause holds
   * restarts (then null, and `work` does not run) unless the failure is certain or the target's
   * restarts have been held `max_hold` already, and once this host's slot is among the first
   * `max_concurrent_restarts` (waiting at most `slot_wait`); the slot is let go after. Without
   * etcd, `work` runs at once. `ask.signal` aborted (stop, reload): the wait ends, the slot is let
   * go, and null without `work`.
   */
  async restart<T>(
    target: string,
    teller: FleetTeller,
    work: () => Promise<T>,
    ask: RestartAsk = { certain: false },
  ): Promise<T | null> {
    if (ask.signal?.aborted) return null;
    const view = await this.etcd.ask(() => this.look(teller));
    if (ask.signal?.aborted) return null;
    if (this.held(target, view, ask.certain)) return null;
    if (view === undefined) return await work();
    const slot = keyOf(this.settings, "slots", target);
    const put = await this.etcd.ask(async () => {
      await this.etcd.client.put(slot, this.settings.host, await this.etcd.leaseId());
      return true;
    });
    if (put === undefined) return ask.signal?.aborted ? null : await work();
    this.slots++;
    let ran = false;
    try {
      await this.waitForSlot(slot, target, ask.signal);
      if (ask.signal?.aborted) return null;
      ran = true;
      return await work();
    } finally {
      // said before the slot goes: the next host's restart begins after this line
      if (ran) logger.info("Restart done: letting go of the fleet restart slot.", { target });
      else logger.info("Stopping: letting go of the fleet restart slot, no restart.", { target });
      this.slots--;
      await this.etcd.ask(async () => {
        await this.etcd.client.delete(slot);
        await this.letGoWhenIdle();
      });
    }
  }

  /**
   * Whether the shared cause in `view` holds this restart of `target`: never a certain failure,
   * and at most `max_hold` since the target's restarts were first held. Said once each way.
   */
  private held(target: string, view: FleetView | undefined, certain: boolean): boolean {
    const now = this.now();
    const shared = view?.shared === true;
    if (!shared) {
      this.holds.delete(target);
      return false;
    }
    const hold = this.holds.get(target) ?? { since: now, said: false, over: false };
    this.holds.set(target, hold);
    const size = fleetSize(this.settings.hosts);
    const { n, names } = hostsSaid(view!.failing, size);
    if (!holdsRestart(shared, certain, hold.since, now, this.settings.maxHoldMs)) {
      if (certain) {
        logger.info(
          "{n} of {size} hosts of the fleet fail at once, but this failure is certain (php-fpm's master gone, or a certain hang): restarting, one fleet slot at a time.",
          { n, size, target },
        );
      } else if (!hold.over) {
        hold.over = true;
        logger.warn(
          "Restarts held {s} s (max_hold) while {n} of {size} hosts fail: restarting now, one fleet slot at a time.",
          { s: Math.round((now - hold.since) / 1000), n, size, target },
        );
      }
      return false;
    }
    if (!hold.said) {
      hold.said = true;
      logger.warn(
        "Restart held: {n} of {size} hosts of the fleet fail at once ({hosts}), a shared cause that restarting would not mend; waiting for it to end, at most {max} s.",
        { n, size, hosts: names, max: this.settings.maxHoldMs / 1000, target },
      );
    }
    return true;
  }

  /**
   * Waits until `slot` is among the first ones, at most `slot_wait`; etcd gone or `signal`
   * aborted ends the wait.
   */
  private async waitForSlot(slot: string, target: string, signal?: AbortSignal): Promise<void> {
    const { maxConcurrentRestarts: max, slotWaitMs } = this.settings;
    const start = this.now();
    let said = false;
    while (!signal?.aborted) {
      const keys = await this.etcd.ask(() =>
        this.etcd.client.list(`${this.settings.prefix}slots/`)
      );
      if (keys === undefined || signal?.aborted) return;
      const ordered = keys.map((k) => k.key);
      if (holdsSlot(ordered, slot, max)) {
        logger.info("Fleet restart slot taken ({ms} ms waited): restarting.", {
          ms: this.now() - start,
          target,
        });
        return;
      }
      if (!said) {
        said = true;
        logger.info("Waiting for a fleet restart slot: {ahead} ahead, at most {max} at once.", {
          ahead: ordered.indexOf(slot) < 0 ? ordered.length : ordered.indexOf(slot),
          max,
          target,
        });
      }
      if (this.now() - start >= slotWaitMs) {
        logger.warn(
          "No fleet restart slot within {s} s: restarting without it (a restart elsewhere is slow).",
          { s: slotWaitMs / 1000, target },
        );
        return;
      }
      await this.deps.clock.sleep(SLOT_POLL_MS, signal);
    }
  }

  /** Reads the failing keys, and moves the fleet-wide alert on; the view. */
  private async look(teller: FleetTeller): Promise<FleetView> {
    const { prefix, hosts, sharedCauseShare } = this.settings;
    const keys = await this.etcd.client.list(`${prefix}failing/`);
    const failing = failingHosts(keys.map((k) => k.key.slice(`${prefix}failing/`.length)), hosts);
    const shared = isSharedCause(failing.length, fleetSize(hosts), sharedCauseShare);
    const view = { failing, shared };
    await this.alert.move(view, teller);
    return view;
  }

  /** Nothing failing, no slot, no alert to resolve: the lease is revoked, its keys with it. */
  private async letGoWhenIdle(): Promise<void> {
    if (this.failing.size > 0 || this.slots > 0 || this.alert.owner) return;
    await this.etcd.revoke();
  }

  /** Lets go of everything: the lease is revoked (its keys go), the keepalive stops. */
  async close(): Promise<void> {
    this.failing.clear();
    this.slots = 0;
    this.alert.close();
    await this.etcd.close();
  }

  private now(): number {
    return this.deps.clock.now();
  }
}
