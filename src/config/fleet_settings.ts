/**
 * `[fleet]`: the restart cap across several servers, kept in etcd. Its keys, their defaults, and
 * the settings watch mode uses (see run/fleet.ts).
 */
import { parse as parseDuration } from "@lukeed/ms";
import * as v from "valibot";
import { withoutUserinfo } from "../shared/redact.ts";
import { custom, transform } from "../shared/schema.ts";
import { BAD_PORTS } from "./urls.ts";

/** The fleet's settings, validated. */
export interface FleetSettings {
  /** etcd's client URLs (its v3 JSON gateway), tried in this order. */
  readonly endpoints: readonly URL[];
  /** Every key php-relaunch writes starts with it ("/php-relaunch/"). */
  readonly prefix: string;
  /** This host's name in the keys (the system's host name unless set). */
  readonly host: string;
  /** The fleet's size, or its hosts by name (only their keys count). */
  readonly hosts: number | readonly string[];
  /** How many hosts of the fleet may restart php-fpm at the same time. */
  readonly maxConcurrentRestarts: number;
  /** More than this share of the fleet's hosts failing at once is a shared cause: restarts held. */
  readonly sharedCauseShare: number;
  /** The lease that binds this watchdog's keys: they vanish this long after it dies. */
  readonly leaseTtlMs: number;
  /** The longest a restart waits for its slot; then it goes on without it. */
  readonly slotWaitMs: number;
  /**
   * The longest a shared cause holds a target's restarts (not a certain failure's: never held);
   * then they resume, one slot at a time.
   */
  readonly maxHoldMs: number;
  /** The most one request to one etcd member may take. */
  readonly requestTimeoutMs: number;
  /** etcd's user and password (etcd auth enabled); absent or null: no auth. */
  readonly auth?: FleetAuth | null;
}

/** The user php-relaunch authenticates to etcd as, and its password (never shown). */
export interface FleetAuth {
  readonly user: string;
  /** Where the password was read from: what check-config shows. */
  readonly passwordFile: string;
  readonly password: string;
}

/** The defaults of `[fleet]`'s optional keys. */
export const FLEET_DEFAULTS = {
  prefix: "/php-relaunch/",
  maxConcurrentRestarts: 1,
  sharedCauseShare: 0.5,
  leaseTtlMs: 15_000,
  slotWaitMs: 60_000,
  maxHoldMs: 300_000,
  requestTimeoutMs: 1000,
} as const;

/** The most etcd members listed. */
export const MAX_ENDPOINTS = 16;
/** The most hosts a fleet counts. */
export const MAX_HOSTS = 10_000;

const shown = (value: unknown) => JSON.stringify(value);
const what = (value: unknown) => value === undefined ? "missing" : `${shown(value)} is not allowed`;
const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

/** One etcd client URL: http(s), a host and port, nothing else (no user, path or query). */
const endpoint = transform(v.unknown(), (value, ctx) => {
  const expected =
    'expected an etcd client URL such as "http://10.0.0.5:2379" (http:// or https://, no path)';
  let url: URL | null = null;
  try {
    url = typeof value === "string" && value.length <= 2048 ? new URL(value) : null;
  } catch { /* said below */ }
  if (
    url === null || (url.protocol !== "http:" && url.protocol !== "https:") ||
    url.username !== "" || url.password !== "" || url.pathname !== "/" || url.search !== "" ||
    url.hash !== ""
  ) {
    return custom(
      ctx,
      `${what(typeof value === "string" ? withoutUserinfo(value) : value)}: ${expected}`,
    );
  }
  if (url.port !== "" && BAD_PORTS.has(Number(url.port))) {
    return custom(ctx, `${shown(value)} is not allowed: fetch refuses port ${url.port}`);
  }
  return url;
});

const whole = (min: number, max: number) =>
  transform(v.unknown(), (value, ctx) => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      return custom(ctx, `${what(value)}: expected a whole number from ${min} to ${max}`);
    }
    return value;
  });

const seconds = (min: number, max: number) =>
  transform(v.unknown(), (value, ctx) => {
    const ms = typeof value === "number"
      ? value * 1000
      : typeof value === "string" && /[a-z]\s*$/i.test(value)
      ? parseDuration(value)
      : NaN;
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < min || ms > max) {
      return custom(
        ctx,
        `${what(value)}: expected a duration from ${min / 1000} s to ${
          max / 1000
        } s, as seconds (15) or with a unit ("15s", "1m")`,
      );
    }
    return ms;
  });

const hostName = transform(v.unknown(), (value, ctx) => {
  if (typeof value !== "string" || !HOST_NAME.test(value)) {
    return custom(ctx, `${what(value)}: expected a host name (letters, digits, . _ -)`);
  }
  return value;
});

/** `[fleet]` as the file gives it (durations in milliseconds). */
export const fleetFileSchema = v.strictObject({
  etcd: v.pipe(
    v.array(endpoint),
    v.minLength(1, "[] is not allowed: expected at least one etcd client URL"),
    v.maxLength(MAX_ENDPOINTS, `too many: expected at most ${MAX_ENDPOINTS} etcd client URLs`),
  ),
  hosts: transform(v.unknown(), (value, ctx) => {
    if (typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= MAX_HOSTS) {
      return value;
    }
    if (
      Array.isArray(value) && value.length >= 1 && value.length <= MAX_HOSTS &&
      value.every((h) => typeof h === "string" && HOST_NAME.test(h)) &&
      new Set(value).size === value.length
    ) {
      return value as string[];
    }
    return custom(
      ctx,
      `${
        what(value)
      }: expected the fleet's size (a whole number from 1 to ${MAX_HOSTS}) or its host names, each once (["web1", "web2", "web3"])`,
    );
  }),
  host: v.optional(hostName),
  prefix: v.optional(transform(v.unknown(), (value, ctx) => {
    if (typeof value !== "string" || !/^\/[A-Za-z0-9._/-]{0,199}\/$/.test(value)) {
      return custom(
        ctx,
        `${what(value)}: expected a key prefix that starts and ends with "/" ("/php-relaunch/")`,
      );
    }
    return value;
  })),
  max_concurrent_restarts: v.optional(whole(1, 1000)),
  shared_cause_share: v.optional(transform(v.unknown(), (value, ctx) => {
    if (typeof value !== "number" || !(value > 0 && value <= 1)) {
      return custom(
        ctx,
        `${what(value)}: expected a share above 0 and at most 1 (0.5: more than half the hosts)`,
      );
    }
    return value;
  })),
  lease_ttl: v.optional(seconds(5000, 300_000)),
  slot_wait: v.optional(seconds(1000, 3_600_000)),
  max_hold: v.optional(seconds(30_000, 3_600_000)),
  timeout: v.optional(seconds(100, 10_000)),
  user: v.optional(transform(v.unknown(), (value, ctx) => {
    if (typeof value !== "string" || !/^[A-Za-z0-9._@-]{1,128}$/.test(value)) {
      return custom(ctx, `${what(value)}: expected etcd's user name ("php-relaunch")`);
    }
    return value;
  })),
  password_file: v.optional(transform(v.unknown(), (value, ctx) => {
    if (typeof value !== "string" || !/^\/[^\0]{0,4095}$/.test(value)) {
      return custom(
        ctx,
        `${what(value)}: expected an absolute path ("/etc/php-relaunch/etcd.password")`,
      );
    }
    return value;
  })),
});

/** `[fleet]` as validated from the file. */
export type FleetFile = v.InferOutput<typeof fleetFileSchema>;

/**
 * The fleet's settings from the file's `[fleet]`; `hostname`: the system's; `password`: read from
 * `password_file` (null without one).
 */
export function fleetSettingsOf(
  file: FleetFile,
  hostname: string,
  password: string | null = null,
): FleetSettings {
  const host = file.host ?? hostname;
  return Object.freeze({
    endpoints: Object.freeze([...file.etcd]),
    prefix: file.prefix ?? FLEET_DEFAULTS.prefix,
    host,
    hosts: typeof file.hosts === "number" ? file.hosts : Object.freeze([...file.hosts]),
    maxConcurrentRestarts: file.max_concurrent_restarts ?? FLEET_DEFAULTS.maxConcurrentRestarts,
    sharedCauseShare: file.shared_cause_share ?? FLEET_DEFAULTS.sharedCauseShare,
    leaseTtlMs: file.lease_ttl ?? FLEET_DEFAULTS.leaseTtlMs,
    slotWaitMs: file.slot_wait ?? FLEET_DEFAULTS.slotWaitMs,
    maxHoldMs: file.max_hold ?? FLEET_DEFAULTS.maxHoldMs,
    requestTimeoutMs: file.timeout ?? FLEET_DEFAULTS.requestTimeoutMs,
    auth: file.user !== undefined && file.password_file !== undefined && password !== null
      ? Object.freeze({ user: file.user, passwordFile: file.password_file, password })
      : null,
  });
}

/** The lines `check-config` prints for the fleet. */
export function describeFleet(f: FleetSettings | null | undefined): string[] {
  if (f === null || f === undefined) {
    return ["fleet          none (restarts are this host's alone)"];
  }
  const size = typeof f.hosts === "number" ? f.hosts : f.hosts.length;
  return [
    `fleet          etcd ${f.endpoints.map((u) => u.origin).join(", ")} (in this order; ${
      f.requestTimeoutMs / 1000
    } s each), keys under ${f.prefix}, this host "${f.host}"${
      typeof f.hosts === "number" ? "" : ` of ${f.hosts.join(", ")}`
    }`,
    `               at most ${f.maxConcurrentRestarts} of ${size} hosts restart at once (a restart waits at most ${
      f.slotWaitMs / 1000
    } s for its slot); restarts held while more than ${
      Math.round(f.sharedCauseShare * 1000) / 10
    } % of the hosts fail, at most ${f.maxHoldMs / 1000} s (a certain crash or hang never); lease ${
      f.leaseTtlMs / 1000
    } s; watch mode only`,
    `               ${
      f.auth
        ? `etcd auth as user "${f.auth.user}", password from ${f.auth.passwordFile}`
        : "no etcd auth"
    }`,
  ];
}
