/**
 * The dead-man's switch: a push URL (healthchecks.io, Uptime Kuma) that php-relaunch pings to say
 * it is alive, so that a watchdog that died (OOM-killed, its crontab gone, hung) is noticed by
 * someone else when the pings stop. A ping has a deadline and is never retried at once; one that
 * fails is logged when the pings begin to fail and when they work again, never as an alert. The
 * URL's path is its secret: only its scheme and host are ever shown.
 */
import * as v from "valibot";
import type { Deadman } from "../config/deadman_settings.ts";
import { forgetProxyEnvironment } from "../probe/http.ts";
import type { Clock, DeadmanPing } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { webhookName } from "../shared/redact.ts";
import { readRegularText, writeFileAtomic } from "../shared/safe_file.ts";
import { parseJsonWith, timestamp } from "../shared/schema.ts";

/** The most one ping may take, connection and answer included. */
export const PING_TIMEOUT_MS = 10_000;

/** How a push URL is told of a failure. */
export type PingStyle = "healthchecks" | "uptime-kuma";

/** Uptime Kuma's push URLs are `/api/push/<token>`; anything else is pinged as healthchecks.io. */
export function pingStyle(url: URL): PingStyle {
  return /\/api\/push\/[^/]+\/?$/.test(url.pathname) ? "uptime-kuma" : "healthchecks";
}

/**
 * The URL a ping goes to: for a success (`why` null) `url` itself (Uptime Kuma's with
 * `status=up`); for a failure, healthchecks.io's `/fail` appended to the path, or Uptime Kuma's
 * `status=down` with `why` as its `msg`.
 */
export function pingUrl(url: URL, why: string | null): URL {
  const out = new URL(url);
  if (pingStyle(url) === "uptime-kuma") {
    out.searchParams.set("status", why === null ? "up" : "down");
    if (why !== null) out.searchParams.set("msg", why);
  } else if (why !== null) {
    out.pathname = `${out.pathname.replace(/\/+$/, "")}/fail`;
  }
  return out;
}

/** What `check-config` says of the switch. */
export function describeDeadman(deadman: Deadman | null): string {
  if (deadman === null) return "none (set [deadman] url: healthchecks.io, Uptime Kuma push)";
  const failure = pingStyle(deadman.url) === "uptime-kuma"
    ? "Uptime Kuma push, status=down"
    : "healthchecks.io style, /fail";
  return `${webhookName(deadman.url)} (${failure} when a run fails): after each cron run; every ${
    deadman.everyMs / 1000
  } s in watch mode`;
}

/** Whether the pings last failed, and since when: kept across cron runs, so a failure is told once. */
export interface PingMemory {
  /** When the pings began to fail, or null when the last one worked. */
  load(): Promise<number | null>;
  save(failingSince: number | null): Promise<void>;
}

const memorySchema = v.object({ failingSince: v.nullable(timestamp) });

/** The memory in a small file of root's state folder (written only when it changes). */
export function filePingMemory(path: string): PingMemory {
  return {
    async load() {
      const text = await readRegularText(path, 1024).catch(() => null);
      const read = text === null ? null : parseJsonWith(memorySchema, text, "not JSON");
      return read === null || typeof read === "string" ? null : read.failingSince;
    },
    save: (failingSince) =>
      writeFileAtomic(path, `${JSON.stringify({ failingSince })}\n`, 0o600).catch((err) =>
        logger.debug("Cannot keep the dead-man's switch's state in {path}: {error}", {
          path,
          error: describeError(err),
        })
      ),
  };
}

/** Pings one push URL and says when its pings begin to fail and when they work again. */
export class DeadmanSwitch {
  /** When the pings began to fail; undefined until the memory is read. */
  #failingSince: number | null | undefined;

  constructor(
    readonly url: URL,
    private readonly deps: { clock: Clock; deadmanPing: DeadmanPing },
    private readonly memory: PingMemory,
    private readonly timeoutMs = PING_TIMEOUT_MS,
  ) {}

  /**
   * Pings: a success when `why` is null, else the failure form with `why`. Resolves to whether
   * the push URL took it, within the deadline or when `signal` aborts (then nothing is logged).
   * Never throws.
   */
  async ping(why: string | null, signal?: AbortSignal): Promise<boolean> {
    const deadline = AbortSignal.timeout(this.timeoutMs);
    let problem: string | null;
    try {
      const status = await this.deps.deadmanPing(
        pingUrl(this.url, why),
        signal ? AbortSignal.any([deadline, signal]) : deadline,
      );
      problem = status >= 200 && status <= 299
        ? null
        : `it answered HTTP ${status}${
          status >= 300 && status <= 399 ? " (a redirect, not followed)" : ""
        }`;
    } catch (err) {
      if (signal?.aborted) return false;
      problem = deadline.aborted
        ? `no answer within ${this.timeoutMs / 1000} s`
        : describeError(err);
    }
    await this.#remember(problem);
    return problem === null;
  }

  async #remember(problem: string | null): Promise<void> {
    this.#failingSince ??= await this.memory.load();
    const fields = { url: webhookName(this.url) };
    if (problem === null) {
      if (this.#failingSince === null) return;
      logger.info("Dead-man's switch {url}: pinged again, failing since {since}.", {
        ...fields,
        since: new Date(this.#failingSince).toISOString(),
      });
      this.#failingSince = null;
    } else if (this.#failingSince === null) {
      logger.warn(
        "Dead-man's switch {url}: the ping failed: {problem}; pings go on, and this is said again only when one works.",
        { ...fields, problem },
      );
      this.#failingSince = this.deps.clock.now();
    } else {
      logger.debug("Dead-man's switch {url}: the ping failed again: {problem}", {
        ...fields,
        problem,
      });
      return;
    }
    await this.memory.save(this.#failingSince);
  }
}

/**
 * The real {@link DeadmanPing}: one GET on a fresh connection, no proxy from the environment,
 * redirects not followed (a push URL that moves is a setup to fix), the body not read.
 */
export const directDeadmanPing: DeadmanPing = async (url, signal) => {
  forgetProxyEnvironment();
  using client = Deno.createHttpClient({});
  const response = await fetch(url, { client, signal, redirect: "manual" });
  await response.body?.cancel();
  return response.status;
};
