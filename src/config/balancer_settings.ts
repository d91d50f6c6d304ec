// deno-lint-ignore-file camelcase -- the file's keys are snake_case, as TOML files' usually are
/**
 * The `[balancer]` section: HAProxy's agent-check, served by watch mode. Its keys as the file
 * writes them (checked by valibot, each problem naming the key and the value), and the settings
 * they make once the targets are known.
 */
import { format as formatDuration, parse as parseDuration } from "@lukeed/ms";
import * as v from "valibot";
import { custom, transform } from "../shared/schema.ts";

/** The longest `drain_wait`: a restart held longer than this would leave a site down for it. */
export const MAX_DRAIN_WAIT_MS = 30_000;
/** How long a drain is let reach the balancer before a gentle rung, by default. */
export const DEFAULT_DRAIN_WAIT_MS = 2000;

/** Watch mode's agent-check, validated. */
export interface BalancerSettings {
  /** The address the agent listens on: loopback, or one the operator named. */
  readonly listen: { readonly hostname: string; readonly port: number };
  /** True when `listen` is beyond loopback (check-config says who can reach it). */
  readonly public: boolean;
  /** The target the agent speaks for; null: every target (drain when any drains). */
  readonly target: string | null;
  /** How long a drain is let reach the balancer before a gentle rung acts (ms). */
  readonly drainWaitMs: number;
}

/** `[balancer]` as written (`drain_wait` in milliseconds). */
export interface FileBalancer {
  agent_listen: string;
  target?: string | undefined;
  drain_wait?: number | undefined;
}

const shown = (value: unknown) => value === undefined ? "missing" : JSON.stringify(value);

/** `drain_wait`: seconds (2, 0.5) or with a unit ("500ms", "2s"), 0 to 30 s. */
const drainWait = transform(v.unknown(), (value, ctx) => {
  const ms = typeof value === "number"
    ? value * 1000
    : typeof value === "string" && /[a-z]\s*$/i.test(value)
    ? parseDuration(value)
    : NaN;
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0 || ms > MAX_DRAIN_WAIT_MS) {
    return custom(
      ctx,
      `${shown(value)} is not allowed: expected a duration from 0 to ${
        formatDuration(MAX_DRAIN_WAIT_MS, true)
      }, as seconds (2, 0.5) or with a unit ("500ms", "2s")`,
    );
  }
  return ms;
});

const agentListen = transform(v.unknown(), (value, ctx) => {
  if (typeof value !== "string" || typeof parseAgentListen(value) === "string") {
    return custom(
      ctx,
      `${shown(value)} is not allowed: ${
        typeof value === "string" ? parseAgentListen(value) : "expected ADDRESS:PORT"
      }`,
    );
  }
  return value;
});

const targetName = transform(v.unknown(), (value, ctx) => {
  if (typeof value !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(value)) {
    return custom(ctx, `${shown(value)} is not allowed: expected the name of a [[target]]`);
  }
  return value;
});

/** The schema of `[balancer]`, for the file's. */
export const balancerSection = v.strictObject({
  "agent_listen": agentListen,
  target: v.optional(targetName),
  "drain_wait": v.optional(drainWait),
}) as v.GenericSchema<unknown, FileBalancer>;

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * ADDRESS:PORT for the agent: an IPv4 address, `[IPv6]` or `localhost`, never a wildcard (which
 * would answer on every interface, the public ones too): the operator names the address the
 * balancer connects to. A sentence saying what is wrong, or the address.
 */
export function parseAgentListen(
  value: string,
): { hostname: string; port: number; public: boolean } | string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[0-9.]+|localhost):(\d{1,5})$/.exec(value.trim());
  const port = Number(m?.[2]);
  const expected =
    "expected ADDRESS:PORT, e.g. 127.0.0.1:977, or the address HAProxy connects to (10.0.0.11:977, [fd00::11]:977)";
  if (m === null || !(port >= 1 && port <= 65535)) return `Cannot use agent address: ${expected}`;
  const host = m[1]!;
  const v4 = IPV4.exec(host);
  if (v4 !== null && v4.slice(1).some((octet) => Number(octet) > 255)) {
    return `Cannot use agent address: ${expected}`;
  }
  if (!host.startsWith("[") && host !== "localhost" && v4 === null) {
    return `Cannot use agent address: ${expected}`;
  }
  const hostname = host.replace(/^\[|\]$/g, "");
  if (hostname === "0.0.0.0" || /^[0:]+$/.test(hostname)) {
    return `Cannot use agent address "${value}": it listens on every interface; ${expected}`;
  }
  if (hostname.includes(":")) {
    try {
      new URL(`http://[${hostname}]/`);
    } catch {
      return `Cannot use agent address: ${expected}`;
    }
  }
  const loopback = hostname === "localhost" || hostname === "::1" || hostname.startsWith("127.");
  return { hostname, port, public: !loopback };
}

/**
 * The balancer's settings from the file's `[balancer]`, once the targets are known, for `mode`
 * (settings.ts's Mode); null without one; else the problems, each naming the key.
 */
export function balancerSettings(
  mode: string,
  section: FileBalancer | undefined,
  configPath: string | null,
  targets: readonly string[],
): BalancerSettings | null | string[] {
  if (section === undefined) return null;
  const problems: string[] = [];
  const listen = parseAgentListen(section.agent_listen);
  if (typeof listen === "string") problems.push(`${configPath}: balancer.agent_listen: ${listen}`);
  if (section.target !== undefined && !targets.includes(section.target)) {
    problems.push(
      `${configPath}: balancer.target: "${section.target}" is not a target: expected one of ${
        targets.map((t) => `"${t}"`).join(", ") || "the [[target]] names"
      }`,
    );
  }
  // a cron run has no process to answer from; the commands on targets (status, pause...) read
  // the same file and leave the section alone
  if (mode === "minute" || mode === "once") {
    problems.push(
      `${configPath}: balancer: HAProxy's agent-check is answered by php-relaunch watch only`,
    );
  }
  if (problems.length > 0 || typeof listen === "string") return problems;
  return Object.freeze({
    listen: Object.freeze({ hostname: listen.hostname, port: listen.port }),
    public: listen.public,
    target: section.target ?? null,
    drainWaitMs: section.drain_wait ?? DEFAULT_DRAIN_WAIT_MS,
  });
}

/** What `check-config` says of the balancer's part. */
export function describeBalancer(b: BalancerSettings | null): string {
  if (b === null) return "none (set [balancer] agent_listen for HAProxy's agent-check)";
  const { hostname, port } = b.listen;
  const address = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  return `HAProxy agent-check on ${address}${
    b.public ? " (beyond loopback: any host that reaches it may ask; let only HAProxy's)" : ""
  }${
    port >= 1024
      ? " (port 1024 or above: another local user who binds it first answers HAProxy in our place; prefer one below 1024)"
      : ""
  } for ${b.target === null ? "every target (drain when one drains)" : `target ${b.target}`}; ${
    b.drainWaitMs / 1000
  } s drain before a gentle rung`;
}
