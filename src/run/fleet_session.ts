/**
 * One watchdog's session with etcd for the fleet (see fleet.ts): its lease, granted when first
 * needed and kept alive, the keys written under it, and whether etcd answers (said once when it
 * stops, once when it answers again).
 */
import { EtcdAuthFailed, EtcdClient, EtcdRefused, EtcdUnreachable } from "../act/etcd.ts";
import { directEtcdPost } from "../act/etcd.ts";
import type { FleetSettings } from "../config/fleet_settings.ts";
import type { Deps } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";

/** How soon etcd is asked again once it did not answer. */
export const ETCD_RETRY_MS = 10_000;

/** A lease, the keys put under it, and etcd's reachability. */
export class FleetSession {
  readonly client: EtcdClient;
  private lease: { id: Promise<string>; keeper: AbortController } | null = null;
  /** The keys written under the current lease: to be put again once it is gone. */
  readonly written = new Set<string>();
  /** etcd did not answer (said once): when it was last tried. */
  private down: { triedAt: number } | null = null;
  /** The keepalive loops still running: each leaves once its lease is let go. */
  private readonly keepers = new Set<Promise<void>>();
  /** etcd answered with a refusal (said once): what it said. */
  private refused: string | null = null;

  constructor(private readonly settings: FleetSettings, private readonly deps: Deps) {
    this.client = new EtcdClient(
      settings.endpoints,
      deps.etcdPost ?? directEtcdPost,
      settings.requestTimeoutMs,
      settings.auth ? { user: settings.auth.user, password: settings.auth.password } : null,
    );
  }

  /** The lease, granted when first needed and kept alive until it is let go. */
  leaseId(): Promise<string> {
    if (this.lease !== null) return this.lease.id;
    const keeper = new AbortController();
    const id = this.client.grant(this.settings.leaseTtlMs);
    const lease = { id, keeper };
    this.lease = lease;
    id.then(
      (granted) => {
        const keeping = this.keep(granted, keeper.signal);
        this.keepers.add(keeping);
        void keeping.finally(() => this.keepers.delete(keeping));
      },
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
  forgetLease(): void {
    this.lease?.keeper.abort();
    this.lease = null;
    this.written.clear();
  }

  /**
   * Runs `what` against etcd: undefined when etcd cannot be reached (said once until it answers;
   * asked again after {@link ETCD_RETRY_MS}) or refuses. A lease etcd forgot is granted anew
   * once. Never throws.
   */
  async ask<T>(what: () => Promise<T>): Promise<T | undefined> {
    if (this.down !== null && this.now() - this.down.triedAt < ETCD_RETRY_MS) return undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const answer = await what();
        if (this.down !== null || this.refused !== null) {
          this.down = null;
          this.refused = null;
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
        if (err instanceof EtcdRefused && !(err instanceof EtcdAuthFailed) && attempt === 0) {
          this.forgetLease();
          continue;
        }
        // said once, like unreachable: a refusing etcd (auth, permissions) refuses every step
        if (this.refused === null) {
          logger.warn(
            "etcd refused: {error}; restarts go on as on a single server until it accepts (said again only then).",
            { error: describeError(err) },
          );
        }
        this.refused = describeError(err);
        return undefined;
      }
    }
    return undefined;
  }

  /** Revokes the lease, if any: every key bound to it goes. */
  async revoke(): Promise<void> {
    if (this.lease === null) return;
    const id = this.lease.id;
    this.forgetLease();
    await this.client.revoke(await id);
  }

  /** Ends the session: the lease revoked (etcd permitting), the keepalive stopped. */
  async close(): Promise<void> {
    await this.revoke().catch(() => {});
    await Promise.all(this.keepers);
  }

  /** How many keepalive loops run (at most one: the current lease's). */
  get keeping(): number {
    return this.keepers.size;
  }

  private now(): number {
    return this.deps.clock.now();
  }
}
