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
import { EtcdClient, EtcdRefused, EtcdUnreachable } from "../act/etcd.ts";
import type { FleetSettings } from "../config/fleet_settings.ts";
import { directEtcdPost } from "../act/etcd.ts";
import type { Deps } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import {
  failingHosts,
  fleetAlertMove,
  type FleetAlertState,
  fleetSize,
  holdsSlot,
  isSharedCause,
} from "./fleet_policy.ts";

/** Where the fleet's alert goes: the target's teller (one log line, and one alert). */
export interface FleetTeller {
  event(
    level: "info" | "warn" | "error",
    message: string,
    subject: string | null,
    details: string[],
    thread: null,
  ): void;
}

/** How soon etcd is asked again once it did not answer. */
export const ETCD_RETRY_MS = 10_000;
/** How often a restart waiting for its slot looks again. */
export const SLOT_POLL_MS = 250;

/** The fleet's view at one moment. */
interface FleetView {
  failing: string[];
  shared: boolean;
}

/** One watchdog's link to the fleet: its lease, its keys, and what it has said. */
export class FleetLink {
  private readonly client: EtcdClient;
  private lease: { id: Promise<string>; keeper: AbortController } | null = null;
  /** Targets failing now, and those whose failing key is written under the current lease. */
  private readonly failing = new Set<string>();
  private readonly written = new Set<string>();
  private slots = 0;
  private alert: FleetAlertState = null;
  /** Since when etcd did not answer (said once), and when it was last tried. */
  private down: { triedAt: number } | null = null;
  /** Targets whose held restart is said already (said again once the hold ends). */
  private readonly heldSaid = new Set<string>();
  private keepers: Promise<void>[] = [];

  constructor(readonly settings: FleetSettings, private readonly deps: Deps) {
    this.client = new EtcdClient(
      settings.endpoints,
      deps.etcdPost ?? directEtcdPost,
      settings.requestTimeoutMs,
    );
  }

  private key(kind: "failing" | "slots", target: string): string {
    return `${this.settings.prefix}${kind}/${this.settings.host}/${target}`;
  }

  /**
   * A target's verdict after its step: its failing key is put (failing) or deleted (healthy);
   * while something fails, or a fleet-wide alert is open, the fleet is looked at. Never throws.
   */
  async observe(target: string, failing: boolean, teller: FleetTeller): Promise<void> {
    if (failing) this.failing.add(target);
    else {
      this.failing.delete(target);
      this.heldSaid.delete(target);
    }
    await this.ask(async () => {
      if (failing && !this.written.has(target)) {
        const id = await this.leaseId();
        await this.client.put(this.key("failing", target), new Date(this.now()).toISOString(), id);
        this.written.add(target);
      } else if (!failing && this.written.has(target)) {
        await this.client.delete(this.key("failing", target));
        this.written.delete(target);
      }
      if (this.failing.size > 0 || this.alert !== null) await this.look(teller);
      await this.letGoWhenIdle();
    });
  }

  /**
   * Runs `work` (the target's restart) when the fleet allows it: not while a shared cause holds
   * restarts (then null, and `work` does not run), and once this host's slot is among the first
   * `max_concurrent_restarts` (waiting at most `slot_wait`); the slot is let go after. Without
   * etcd, `work` runs at once.
   */
  async restart<T>(target: string, teller: FleetTeller, work: () => Promise<T>): Promise<T | null> {
    const view = await this.ask(() => this.look(teller));
    if (view?.shared === true) {
      if (!this.heldSaid.has(target)) {
        this.heldSaid.add(target);
        logger.warn(
          "Restart held: {n} of {size} hosts of the fleet fail at once ({hosts}), a shared cause that restarting would not mend; waiting for it to end.",
          {
            n: view.failing.length,
            size: fleetSize(this.settings.hosts),
            hosts: view.failing.join(", "),
            target,
          },
        );
      }
      return null;
    }
    this.heldSaid.delete(target);
    if (view === undefined) return await work();
    const slot = this.key("slots", target);
    const put = await this.ask(async () => {
      await this.client.put(slot, this.settings.host, await this.leaseId());
      return true;
    });
    if (put === undefined) return await work();
    this.slots++;
    try {
      await this.waitForSlot(slot, target);
      return await work();
    } finally {
      this.slots--;
      await this.ask(async () => {
        await this.client.delete(slot);
        await this.letGoWhenIdle();
      });
      logger.info("Fleet restart slot let go.", { target });
    }
  }

  /** Waits until `slot` is among the first ones, at most `slot_wait`; etcd gone ends the wait. */
  private async waitForSlot(slot: string, target: string): Promise<void> {
    const { maxConcurrentRestarts: max, slotWaitMs } = this.settings;
    const start = this.now();
    let said = false;
    while (true) {
      const keys = await this.ask(() => this.client.list(`${this.settings.prefix}slots/`));
      if (keys === undefined) return;
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
      await this.deps.clock.sleep(SLOT_POLL_MS);
    }
  }

  /** Reads the failing keys, and moves the fleet-wide alert on; the view. */
  private async look(teller: FleetTeller): Promise<FleetView> {
    const { prefix, hosts, sharedCauseShare } = this.settings;
    const keys = await this.client.list(`${prefix}failing/`);
    const failing = failingHosts(keys.map((k) => k.key.slice(`${prefix}failing/`.length)), hosts);
    const shared = isSharedCause(failing.length, fleetSize(hosts), sharedCauseShare);
    const view = { failing, shared };
    const move = fleetAlertMove(this.alert, shared);
    if (move === "claim") await this.claim(view, teller);
    else if (move === "resolve") await this.resolve(view, teller);
    else if (move === "forget") {
      logger.info("The fleet-wide failure is over: {n} hosts fail now.", { n: failing.length });
      this.alert = null;
    }
    return view;
  }

  private async claim(view: FleetView, teller: FleetTeller): Promise<void> {
    const { prefix, host, hosts } = this.settings;
    const owner = await this.client.putIfAbsent(
      `${prefix}fleet-alert`,
      host,
      await this.leaseId(),
    );
    this.alert = { owner, since: this.now(), hosts: view.failing };
    const message = `Fleet-wide failure: ${view.failing.length} of ${
      fleetSize(hosts)
    } hosts fail at once (${view.failing.join(", ")}); restarts are held until fewer fail.`;
    if (!owner) {
      logger.warn("{message} Another host alerts.", { message });
      return;
    }
    teller.event("error", message, "PHP fleet-wide failure", [
      `Failing hosts: ${view.failing.join(", ")}`,
      `Restarts are held while more than ${
        Math.round(this.settings.sharedCauseShare * 1000) / 10
      } % of the ${fleetSize(hosts)} hosts fail: look for a shared cause (the database, a deploy).`,
    ], null);
  }

  private async resolve(view: FleetView, teller: FleetTeller): Promise<void> {
    const since = this.alert?.since ?? this.now();
    this.alert = null;
    teller.event(
      "info",
      `Fleet-wide failure over after ${
        Math.round((this.now() - since) / 1000)
      } s: ${view.failing.length} hosts fail now; restarts go on.`,
      "PHP fleet-wide failure resolved",
      [],
      null,
    );
    await this.client.delete(`${this.settings.prefix}fleet-alert`);
  }

  /** The lease, granted when first needed and kept alive until it is let go. */
  private leaseId(): Promise<string> {
    if (this.lease !== null) return this.lease.id;
    const keeper = new AbortController();
    const id = this.client.grant(this.settings.leaseTtlMs);
    const lease = { id, keeper };
    this.lease = lease;
    id.then(
      (granted) => this.keepers.push(this.keep(granted, keeper.signal)),
      () => {
        if (this.lease === lease) this.lease = null;
      },
    );
    return id;
  }

  /** Keeps lease `id` alive every third of its time to live, until `stop`. */
  private async keep(id: string, stop: AbortSignal): Promise<void> {
    while (!stop.aborted) {
      await this.deps.clock.sleep(this.settings.leaseTtlMs / 3, stop);
      if (stop.aborted) return;
      try {
        if (!(await this.client.keepAlive(id))) {
          this.forgetLease();
          return;
        }
      } catch {
        // unreachable for now: the next step says so, and the lease may yet be kept
      }
    }
  }

  /** The lease is gone (expired, revoked, or etcd forgot it): every key is to be put again. */
  private forgetLease(): void {
    this.lease?.keeper.abort();
    this.lease = null;
    this.written.clear();
  }

  /** Nothing failing, no slot, no alert to resolve: the lease is revoked, its keys with it. */
  private async letGoWhenIdle(): Promise<void> {
    if (this.failing.size > 0 || this.slots > 0 || this.alert?.owner === true) return;
    if (this.lease === null) return;
    const id = this.lease.id;
    this.forgetLease();
    await this.client.revoke(await id);
  }

  /**
   * Runs `what` against etcd: undefined when etcd cannot be reached (said once until it answers;
   * asked again after {@link ETCD_RETRY_MS}) or refuses. A lease etcd forgot is granted anew
   * once. Never throws.
   */
  private async ask<T>(what: () => Promise<T>): Promise<T | undefined> {
    if (this.down !== null && this.now() - this.down.triedAt < ETCD_RETRY_MS) return undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const answer = await what();
        if (this.down !== null) {
          this.down = null;
          logger.info("etcd answers again: the fleet's restart cap is back.");
        }
        return answer;
      } catch (err) {
        if (err instanceof EtcdUnreachable) {
          if (this.down === null) {
            logger.warn(
              "Cannot reach etcd: restarts go on as on a single server until it answers: {error}",
              { error: err.message },
            );
          }
          this.down = { triedAt: this.now() };
          this.forgetLease();
          return undefined;
        }
        // a lease that expired meanwhile (etcd's "lease not found"): once more with a new one
        if (err instanceof EtcdRefused && attempt === 0) {
          this.forgetLease();
          continue;
        }
        logger.warn("etcd: {error}", { error: describeError(err) });
        return undefined;
      }
    }
    return undefined;
  }

  /** Lets go of everything: the lease is revoked (its keys go), the keepalive stops. */
  async close(): Promise<void> {
    this.failing.clear();
    this.slots = 0;
    if (this.alert?.owner === true) this.alert = null;
    if (this.lease !== null) {
      const id = this.lease.id;
      this.forgetLease();
      await this.client.revoke(await id).catch(() => {});
    }
    await Promise.all(this.keepers);
  }

  private now(): number {
    return this.deps.clock.now();
  }
}
