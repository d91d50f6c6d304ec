/**
 * A TCP listener that any local user may reach and none may take down: at most a few connections
 * at once (what happens to a newcomer when full is the caller's rule), an accept error logged once
 * and then a pause (file descriptors run out: connections must end first), and every connection
 * closed when the listener stops. Watch mode's /metrics endpoint and HAProxy agent are built on it.
 */
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";

/** How one listener treats its connections. */
export interface ListenerRules {
  /** Its name in the log ("The metrics endpoint"). */
  what: string;
  /** Connections open at once. */
  maxConnections: number;
  /** The pause after an accept error. */
  acceptPauseMs: number;
  /**
   * Full: closes one of `open` (oldest first) to make room and returns it, or returns null and
   * the newcomer is closed instead.
   */
  makeRoom(open: ReadonlySet<Deno.Conn>): Deno.Conn | null;
  /** Serves one connection; never throws. The connection is closed after it, whatever it did. */
  serve(conn: Deno.Conn): Promise<void>;
}

/** A running listener. */
export interface BoundedListener {
  /** Resolves when it has stopped (its signal aborted), every connection closed. */
  finished: Promise<void>;
  /** The connections open now. */
  readonly open: number;
  /** The port it listens on (the one asked for, or the one given for port 0). */
  readonly port: number;
}

/**
 * Listens on `listen` until `signal` aborts.
 * @throws what `Deno.listen` throws (the address in use, not one of this host's).
 */
export function listenBounded(
  listen: { hostname: string; port: number },
  rules: ListenerRules,
  signal: AbortSignal,
): BoundedListener {
  const listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
  // oldest first: a Set keeps the order connections came in
  const open = new Set<Deno.Conn>();
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
          logger.error("{what} cannot accept a connection: {error}; going on.", {
            what: rules.what,
            error: describeError(err),
          });
        }
        await pause(rules.acceptPauseMs, signal);
        continue;
      }
      if (open.size >= rules.maxConnections) {
        const evicted = rules.makeRoom(open);
        if (evicted === null) {
          closeQuietly(conn);
          continue;
        }
        // its serve ends on the closed connection
        closeQuietly(evicted);
        open.delete(evicted);
      }
      open.add(conn);
      const one = rules.serve(conn).finally(() => {
        open.delete(conn);
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
