/**
 * Watch mode's /metrics endpoint on loopback, built to outlast whoever connects: at most a few
 * connections at once, each with one request, a second to send it and a few seconds in all; when
 * full, a newcomer takes the place of the oldest connection that has not sent its request for a
 * while (Prometheus sends its own within milliseconds), so idle connections cannot keep Prometheus
 * out, and a flood of new ones cannot push out the scrape just arrived; and an accept loop that
 * logs its errors once and goes on. Any local user can connect; none can take the watch process
 * down or hold its file descriptors. One who connects without pause still competes with
 * Prometheus for each place freed: a scrape may then fail, and the next one is likely served.
 * Deno.serve offers neither a connection limit nor deadlines, and an accept error it meets (too
 * many open files) is uncaught and ends the process: so this small HTTP/1.1 responder.
 */
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";

/** The endpoint's limits. */
export interface EndpointLimits {
  /** Connections served at once; more are closed on arrival. */
  maxConnections: number;
  /** How long one connection may take, from its accept to its answer's last byte. */
  connectionMs: number;
  /** How long a connection may take to send its request's head (Prometheus: milliseconds). */
  headMs: number;
  /** How long a connection must have been silent before a newcomer may take its place. */
  evictAfterMs: number;
  /** The most of a request read (Prometheus sends a few hundred bytes). */
  maxRequestBytes: number;
  /** The pause after an accept error (file descriptors run out: connections must end first). */
  acceptPauseMs: number;
}

/** What a Prometheus scrape needs, and no more. */
export const DEFAULT_LIMITS: EndpointLimits = {
  maxConnections: 8,
  connectionMs: 5000,
  headMs: 1000,
  evictAfterMs: 100,
  maxRequestBytes: 8192,
  acceptPauseMs: 1000,
};

/** A running endpoint. */
export interface Endpoint {
  /** Resolves when it has stopped (its signal aborted), every connection closed. */
  finished: Promise<void>;
  /** The connections open now. */
  readonly open: number;
  /** The port it listens on (the one asked for, or the one given for port 0). */
  readonly port: number;
}

const encoder = new TextEncoder();

/**
 * Serves `render()`'s text at /metrics on `listen` until `signal` aborts.
 * @throws what `Deno.listen` throws (the address in use, not allowed).
 */
export function serveMetricsEndpoint(
  listen: { hostname: string; port: number },
  render: () => Promise<string>,
  signal: AbortSignal,
  limits: EndpointLimits = DEFAULT_LIMITS,
): Endpoint {
  const listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
  const open = new Set<Deno.Conn>();
  // the connections that have not sent their request yet, oldest first, with when they came
  const idle = new Map<Deno.Conn, number>();
  const stop = () => {
    closeQuietly(listener);
    for (const conn of open) closeQuietly(conn);
  };
  signal.addEventListener("abort", stop, { once: true });
  let told = false;
  const served = new Set<Promise<void>>();
  const finished = (async () => {
    while (!signal.aborted) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (signal.aborted) break;
        // said once: a flood of connections must not flood the log too
        if (!told) {
          told = true;
          logger.error("The metrics endpoint cannot accept a connection: {error}; going on.", {
            error: describeError(err),
          });
        }
        await pause(limits.acceptPauseMs, signal);
        continue;
      }
      if (open.size >= limits.maxConnections) {
        const [oldest, since] = idle.entries().next().value ?? [undefined, 0];
        if (oldest === undefined || performance.now() - since < limits.evictAfterMs) {
          closeQuietly(conn);
          continue;
        }
        // its serveOne ends on the closed connection, and leaves the sets
        closeQuietly(oldest);
        open.delete(oldest);
        idle.delete(oldest);
      }
      open.add(conn);
      idle.set(conn, performance.now());
      const one = serveOne(conn, render, limits, () => idle.delete(conn)).finally(() => {
        open.delete(conn);
        idle.delete(conn);
        closeQuietly(conn);
        served.delete(one);
      });
      served.add(one);
    }
    await Promise.all(served);
  })();
  return {
    finished,
    get open() {
      return open.size;
    },
    port: (listener.addr as Deno.NetAddr).port,
  };
}

/**
 * One request on `conn`, its head within `limits.headMs` (then `asked()`), answered and closed
 * within `limits.connectionMs`. Never throws.
 */
async function serveOne(
  conn: Deno.Conn,
  render: () => Promise<string>,
  limits: EndpointLimits,
  asked: () => void,
): Promise<void> {
  // closing the connection is what ends a pending read or write (platform-facts.md §d)
  const timer = setTimeout(() => closeQuietly(conn), limits.connectionMs);
  const headTimer = setTimeout(() => closeQuietly(conn), limits.headMs);
  try {
    const head = await readHead(conn, limits.maxRequestBytes);
    clearTimeout(headTimer);
    if (head === null) return;
    asked();
    const [method = "", target = ""] = head.split("\r\n")[0]!.split(" ");
    const path = target.split("?")[0];
    let status = 200;
    let body = "";
    if (method !== "GET" && method !== "HEAD") [status, body] = [405, "php-relaunch: GET only\n"];
    else if (path !== "/metrics") [status, body] = [404, "php-relaunch: see /metrics\n"];
    else {body = await render().catch((err) => {
        status = 500;
        return `php-relaunch: ${describeError(err)}\n`;
      });}
    const bytes = encoder.encode(body);
    const reason = { 200: "OK", 404: "Not Found", 405: "Method Not Allowed" }[status] ??
      "Internal Server Error";
    const type = status === 200
      ? "text/plain; version=0.0.4; charset=utf-8"
      : "text/plain; charset=utf-8";
    await writeAll(
      conn,
      encoder.encode(
        `HTTP/1.1 ${status} ${reason}\r\ncontent-type: ${type}\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`,
      ),
    );
    if (method !== "HEAD") await writeAll(conn, bytes);
  } catch {
    // a client gone, or too slow: its connection is closed, nothing else changes
  } finally {
    clearTimeout(timer);
    clearTimeout(headTimer);
  }
}

/** The request's head (up to the empty line), or null when it does not come whole in bounds. */
async function readHead(conn: Deno.Conn, maxBytes: number): Promise<string | null> {
  const buffer = new Uint8Array(maxBytes);
  let at = 0;
  const decoder = new TextDecoder();
  while (at < maxBytes) {
    const n = await conn.read(buffer.subarray(at));
    if (n === null) return null;
    at += n;
    const text = decoder.decode(buffer.subarray(0, at));
    if (text.includes("\r\n\r\n")) return text;
  }
  return null;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let rest = bytes;
  while (rest.length > 0) rest = rest.subarray(await conn.write(rest));
}

/** Closes a connection or listener that may be closed already. */
export function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // closed already
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
