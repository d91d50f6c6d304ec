/**
 * An in-memory etcd for unit tests: the few v3 gateway calls php-relaunch makes (lease grant,
 * keepalive, revoke; put, txn put-if-absent, range by create revision, deleterange), answered
 * as etcd 3.4's gateway answers them. `down` makes every call fail as a refused connection does.
 * With `users` set, auth is enabled: `/v3/auth/authenticate` gives tokens, and every other call
 * needs one in its `authorization` header, as etcd does.
 */
import type { EtcdPost } from "../../src/shared/deps.ts";
import { fromBase64, toBase64 } from "../../src/act/etcd.ts";
import { FLEET_DEFAULTS, type FleetSettings } from "../../src/config/fleet_settings.ts";
import type { FleetTeller } from "../../src/run/fleet.ts";
import { fetchErrors } from "./fakes.ts";

/** A fleet of three hosts on one (fake) member, `host` this one; `over` for the test's own. */
export function fleetSettings(host: string, over: Partial<FleetSettings> = {}): FleetSettings {
  return {
    endpoints: [new URL("http://127.0.0.1:2379")],
    prefix: "/php-relaunch/",
    host,
    hosts: 3,
    maxConcurrentRestarts: 1,
    sharedCauseShare: 1,
    leaseTtlMs: FLEET_DEFAULTS.leaseTtlMs,
    slotWaitMs: 10_000,
    maxHoldMs: FLEET_DEFAULTS.maxHoldMs,
    requestTimeoutMs: 500,
    ...over,
  };
}

/** A teller that keeps the alerts (those with a subject) as "subject: message". */
export function keptAlerts(): FleetTeller & { alerts: string[] } {
  const alerts: string[] = [];
  return {
    alerts,
    event: (_level, message, subject) => {
      if (subject !== null) alerts.push(`${subject}: ${message}`);
    },
  };
}

type Json = Record<string, unknown>;

export class FakeEtcd {
  revision = 1;
  readonly kv = new Map<string, { value: string; create: number; lease: string }>();
  readonly leases = new Set<string>();
  private nextLease = 7000;
  /** Every member refuses connections. */
  down = false;
  /** These paths are refused, as etcd refuses a user without the permission (HTTP 403). */
  refuse = new Set<string>();
  /** The paths called, in order. */
  readonly calls: string[] = [];
  /** Auth enabled: each user's password (null: auth disabled). */
  users: Map<string, string> | null = null;
  /** The tokens given and still valid. */
  readonly tokens = new Set<string>();
  private nextToken = 1;
  /** The `authorization` header of each call, in order ("" when none). */
  readonly tokensSent: string[] = [];

  /** Enables auth with these users and passwords. */
  withAuth(users: Record<string, string>): this {
    this.users = new Map(Object.entries(users));
    return this;
  }

  /** Every token given so far expires (as etcd's simple tokens do after 5 min idle). */
  expireTokens(): void {
    this.tokens.clear();
  }

  /** The keys that start with `prefix`, oldest first. */
  keys(prefix = ""): string[] {
    return [...this.kv.entries()].filter(([k]) => k.startsWith(prefix))
      .sort((a, b) => a[1].create - b[1].create).map(([k]) => k);
  }

  readonly post: EtcdPost = (url, json, _signal, headers) => {
    if (this.down) return Promise.reject(fetchErrors.refused());
    this.calls.push(url.pathname);
    const token = headers?.authorization ?? "";
    this.tokensSent.push(token);
    const body = JSON.parse(json) as Json;
    const answer = this.refuse.has(url.pathname)
      ? { status: 403, json: { error: "etcdserver: permission denied", code: 7 } }
      : this.authProblem(url.pathname, body, token) ?? this.answer(url.pathname, body);
    return Promise.resolve({ status: answer.status, body: JSON.stringify(answer.json) });
  };

  /** With auth: a token given, or etcd's refusal of the call. */
  private authProblem(
    path: string,
    body: Json,
    token: string,
  ): { status: number; json: Json } | null {
    if (this.users === null) return null;
    if (path === "/v3/auth/authenticate") {
      if (this.users.get(String(body.name)) !== String(body.password)) {
        const message = "etcdserver: authentication failed, invalid user ID or password";
        return { status: 400, json: { error: message, message, code: 3 } };
      }
      const given = `tok${this.nextToken++}.${this.revision}`;
      this.tokens.add(given);
      return { status: 200, json: { header: { revision: String(this.revision) }, token: given } };
    }
    if (token === "") {
      const message = "etcdserver: user name is empty";
      return { status: 400, json: { error: message, message, code: 3 } };
    }
    if (!this.tokens.has(token)) {
      const message = "etcdserver: invalid auth token";
      return { status: 401, json: { error: message, message, code: 16 } };
    }
    return null;
  }

  private put(key: string, value: string, lease: string): { status: number; json: Json } | null {
    if (lease !== undefined && lease !== "0" && !this.leases.has(lease)) {
      return { status: 404, json: { error: "etcdserver: requested lease not found", code: 5 } };
    }
    this.revision++;
    const old = this.kv.get(key);
    this.kv.set(key, { value, create: old?.create ?? this.revision, lease });
    return null;
  }

  private answer(path: string, body: Json): { status: number; json: Json } {
    const header = { revision: String(this.revision) };
    switch (path) {
      case "/v3/lease/grant": {
        const id = String(this.nextLease++);
        this.leases.add(id);
        return { status: 200, json: { header, ID: id, TTL: String(body.TTL) } };
      }
      case "/v3/lease/keepalive": {
        const id = String(body.ID);
        return {
          status: 200,
          json: { result: { header, ID: id, ...(this.leases.has(id) ? { TTL: "15" } : {}) } },
        };
      }
      case "/v3/lease/revoke": {
        const id = String(body.ID);
        if (!this.leases.delete(id)) {
          return { status: 404, json: { error: "etcdserver: requested lease not found", code: 5 } };
        }
        for (const [k, v] of this.kv) if (v.lease === id) this.kv.delete(k);
        this.revision++;
        return { status: 200, json: { header } };
      }
      case "/v3/kv/put": {
        const refused = this.put(
          fromBase64(String(body.key)),
          fromBase64(String(body.value)),
          String(body.lease ?? "0"),
        );
        return refused ?? { status: 200, json: { header } };
      }
      case "/v3/kv/txn": {
        const compare = (body.compare as Json[])[0]!;
        const key = fromBase64(String(compare.key));
        if (this.kv.has(key)) return { status: 200, json: { header } };
        const put = ((body.success as Json[])[0]!.request_put) as Json;
        const refused = this.put(
          fromBase64(String(put.key)),
          fromBase64(String(put.value)),
          String(put.lease ?? "0"),
        );
        return refused ?? { status: 200, json: { header, succeeded: true } };
      }
      case "/v3/kv/range": {
        const from = fromBase64(String(body.key));
        const to = body.range_end === undefined ? null : fromBase64(String(body.range_end));
        const kvs = [...this.kv.entries()]
          .filter(([k]) => to === null ? k === from : k >= from && k < to)
          .sort((a, b) => a[1].create - b[1].create)
          .map(([k, v]) => ({
            key: toBase64(k),
            value: toBase64(v.value),
            create_revision: String(v.create),
            lease: v.lease,
          }));
        return { status: 200, json: { header, ...(kvs.length ? { kvs } : {}) } };
      }
      case "/v3/kv/deleterange": {
        this.kv.delete(fromBase64(String(body.key)));
        this.revision++;
        return { status: 200, json: { header } };
      }
    }
    return { status: 404, json: { error: "Not Found", code: 5 } };
  }
}
