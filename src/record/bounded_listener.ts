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

/** How often a listener that cannot bind tries again (with `keepTrying`). */
export const BIND_RETRY_MS = 10_000;

/**
 * Listens on `listen` until `signal` aborts. With `keepTrying`, an address that cannot be bound
 * (another process holds it) is logged once and tried again every {@link BIND_RETRY_MS}, instead
 * of thrown.
 * @throws what `Deno.listen` throws (the address in use, not one of this host's), unless
 * `keepTrying`.
 */
export function listenBounded(
  listen: { hostname: string; port: number },
  rules: ListenerRules,
  signal: AbortSignal,
  options: { keepTrying?: boolean; retryMs?: number } = {},
): BoundedListener {
  let listener: Deno.Listener | null = null;
  // a port given by the system (0 asked) is the one bound again
  let port = listen.port;
  const bind = () => {
    listener = Deno.listen({ hostname: listen.hostname, port });
    port = (listener.addr as Deno.NetAddr).port;
    return listener;
  };
  if (!options.keepTrying) bind();
  // oldest first: a Set keeps the order connections came in
  const open = new Set<Deno.Conn>();
  const stop = () => {
    if (listener !== null) closeQuietly(listener);
    for (const conn of open) closeQuietly(conn);
  };
  signal.addEventListener("abort", stop, { once: true });
  const told = { accept: false, bind: false };
  const served = new Set<Promise<void>>();
  const finished = (async () => {
    while (!signal.aborted) {
      const bound = listener ?? await bindAgain(bind, rules, listen, told, signal, options);
      if (bound === null) continue;
      let conn: Deno.Conn;
      try {
        conn = await bound.accept();
      } catch (err) {
        if (signal.aborted) break;
        // a connection reset before its accept fails that accept alone: the next one goes on at
        // once (a pause for each would let a flood of resets keep everyone out for minutes)
        if (ofOneConnection(err)) continue;
        // said once: a flood of connections must not flood the log too
        if (!told.accept) {
          told.accept = true;
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
    if (listener !== null) closeQuietly(listener);
    await Promise.all(served);
  })();
  return {
    finished,
    get open() {
      return open.size;
    },
    get port() {
      return port;
    },
  };
}

/** Binds, or says why not (once, and once when it works) and waits; null: not yet. */
async function bindAgain(
  bind: () => Deno.Listener,
  rules: ListenerRules,
  listen: { hostname: string; port: number },
  told: { bind: boolean },
  signal: AbortSignal,
  options: { retryMs?: number },
): Promise<Deno.Listener | null> {
  try {
    const bound = bind();
    if (told.bind) {
      told.bind = false;
      logger.info("{what} listens on {address}:{port} now.", {
        what: rules.what,
        address: listen.hostname,
        port: listen.port,
      });
    }
    return bound;
  } catch (err) {
    if (!told.bind) {
      told.bind = true;
      logger.error("{what} cannot listen on {address}:{port}: {error}; trying again every {s} s.", {
        what: rules.what,
        address: listen.hostname,
        port: listen.port,
        error: describeError(err),
        s: (options.retryMs ?? BIND_RETRY_MS) / 1000,
      });
    }
    await pause(options.retryMs ?? BIND_RETRY_MS, signal);
    return null;
  }
}

/** Whether an accept failed on the connection it took (reset or aborted by its client). */
function ofOneConnection(err: unknown): boolean {
  return err instanceof Deno.errors.NotConnected || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted;
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
