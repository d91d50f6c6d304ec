/**
 * The fleet-wide alert (see fleet.ts): claimed through `<prefix>fleet-alert` when a shared cause
 * begins (the host that puts the key first alerts, the others log), resolved once the share has
 * stayed below the threshold for a while, and sent at most once per a few minutes each way, so
 * that a share flapping around the threshold does not make an alert storm.
 */
import type { FleetSettings } from "../config/fleet_settings.ts";
import type { Deps } from "../shared/deps.ts";
import { logger } from "../shared/log.ts";
import {
  FLEET_ALERT_EVERY_MS,
  fleetAlertMove,
  type FleetAlertState,
  fleetSize,
  hostsSaid,
  mayAlertAgain,
} from "./fleet_policy.ts";
import type { FleetSession } from "./fleet_session.ts";

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

/** The fleet's view at one moment. */
export interface FleetView {
  failing: string[];
  shared: boolean;
}

/** One watchdog's part in the fleet-wide alert. */
export class FleetAlert {
  private state: FleetAlertState = null;
  /** When each direction of the alert was last sent. */
  private readonly lastAt: { failure: number | null; resolved: number | null } = {
    failure: null,
    resolved: null,
  };

  constructor(
    private readonly settings: FleetSettings,
    private readonly deps: Deps,
    private readonly etcd: FleetSession,
  ) {}

  /** Whether a fleet-wide failure is seen (the fleet is looked at until it is over). */
  get open(): boolean {
    return this.state !== null;
  }

  /** Whether this host holds the alert key (its lease is kept until it resolves it). */
  get owner(): boolean {
    return this.state?.owner === true;
  }

  /** Moves the alert on from the fleet's `view`. */
  async move(view: FleetView, teller: FleetTeller): Promise<void> {
    const move = fleetAlertMove(this.state, view.shared, this.now());
    if (move === "claim") await this.claim(view, teller);
    else if (move === "below" && this.state !== null) this.state.belowSince = this.now();
    else if (move === "above" && this.state !== null) this.state.belowSince = null;
    else if (move === "resolve") await this.resolve(view, teller);
    else if (move === "forget") {
      logger.info("The fleet-wide failure is over: {n} hosts fail now.", {
        n: hostsSaid(view.failing, fleetSize(this.settings.hosts)).n,
      });
      this.state = null;
    }
  }

  /** Forgets the alert (the lease, and the key with it, goes). */
  close(): void {
    this.state = null;
  }

  private async claim(view: FleetView, teller: FleetTeller): Promise<void> {
    const { prefix, host, hosts } = this.settings;
    const owner = await this.etcd.client.putIfAbsent(
      `${prefix}fleet-alert`,
      host,
      await this.etcd.leaseId(),
    );
    // a flapping share alerts at most once per FLEET_ALERT_EVERY_MS: the rest only in the log
    const alerted = owner && mayAlertAgain(this.lastAt.failure, this.now());
    this.state = { owner, alerted, since: this.now(), hosts: view.failing, belowSince: null };
    const size = fleetSize(hosts);
    const { n, names } = hostsSaid(view.failing, size);
    const message =
      `Fleet-wide failure: ${n} of ${size} hosts fail at once (${names}); restarts are held until fewer fail (at most ${
        this.settings.maxHoldMs / 1000
      } s; a certain crash or hang is restarted at once).`;
    if (!owner) {
      logger.warn("{message} Another host alerts.", { message });
      return;
    }
    if (!alerted) {
      logger.warn("{message} (Alerted less than {min} min ago: not again.)", {
        message,
        min: FLEET_ALERT_EVERY_MS / 60_000,
      });
      return;
    }
    this.lastAt.failure = this.now();
    teller.event("error", message, "PHP fleet-wide failure", [
      `Failing hosts: ${names}`,
      `Restarts are held while more than ${
        Math.round(this.settings.sharedCauseShare * 1000) / 10
      } % of the ${size} hosts fail: look for a shared cause (the database, a deploy).`,
    ], null);
  }

  private async resolve(view: FleetView, teller: FleetTeller): Promise<void> {
    const since = this.state?.since ?? this.now();
    const alerted = this.state?.alerted === true;
    this.state = null;
    const message = `Fleet-wide failure over after ${Math.round((this.now() - since) / 1000)} s: ${
      hostsSaid(view.failing, fleetSize(this.settings.hosts)).n
    } hosts fail now; restarts go on.`;
    // resolved only what was alerted, at most once per FLEET_ALERT_EVERY_MS
    if (alerted && mayAlertAgain(this.lastAt.resolved, this.now())) {
      this.lastAt.resolved = this.now();
      teller.event("info", message, "PHP fleet-wide failure resolved", [], null);
    } else logger.info("{message}", { message });
    await this.etcd.client.delete(`${this.settings.prefix}fleet-alert`);
  }

  private now(): number {
    return this.deps.clock.now();
  }
}
