/**
 * HAProxy's agent-check, answered by watch mode: HAProxy connects to `agent-port` every
 * `agent-inter`, may send its `agent-send` text, and reads one line of words ended by a newline.
 * The answer is written at once on accept (HAProxy's agent-send is optional, and nothing it says
 * changes the answer), the write side is closed, what the client sent is read and dropped until
 * it closes, and the connection ends within a second whatever the client does. At most a few
 * connections are open at once: a newcomer takes the place of the oldest, which had its answer
 * the moment it came, so connections held open by anyone cannot keep HAProxy out. An accept
 * error is logged once and the agent goes on; the probes never depend on it.
 */
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { closeQuietly, pause } from "./metrics_endpoint.ts";

/** What the agent tells the balancer. */
export type AgentState = "up" | "drain";

/**
 * The line for `state`. HAProxy's "drain" sets the server's administrative state to DRAIN, which
 * only the agent's "ready" cancels ("up" alone sets the operational state and leaves a drain in
 * place), so a healthy answer says both; "up" beside "drain" leaves the regular health check the
 * judge of whether the server is down.
 */
export function agentLine(state: AgentState): string {
  return state === "up" ? "up ready\n" : "up drain\n";
}

/** The agent's limits. */
export interface AgentLimits {
  /** Connections open at once; a newcomer beyond closes the oldest. */
  maxConnections: number;
  /** How long one connection may stay open, from its accept. */
  connectionMs: number;
  /** The most of what a client sends that is read (and dropped) before the connection ends. */
  maxRequestBytes: number;
  /** The pause after an accept error (file descriptors run out: connections must end first). */
  acceptPauseMs: number;
}

/** What HAProxy needs, and no more: one check per server per `agent-inter`, each milliseconds. */
export const AGENT_LIMITS: AgentLimits = {
  maxConnections: 16,
  connectionMs: 1000,
  maxRequestBytes: 1024,
  acceptPauseMs: 1000,
};

/** A running agent. */
export interface AgentEndpoint {
  /** Resolves when it has stopped (its signal aborted), every connection closed. */
  finished: Promise<void>;
  /** The connections open now. */
  readonly open: number;
  /** The port it listens on (the one asked for, or the one given for port 0). */
  readonly port: number;
}

const encoder = new TextEncoder();

/**
 * Answers HAProxy's agent-check on `listen` with `state()` until `signal` aborts.
 * @throws what `Deno.listen` throws (the address in use, not one of this host's).
 */
export function serveAgentCheck(
  listen: { hostname: string; port: number },
  state: () => AgentState,
  signal: AbortSignal,
  limits: AgentLimits = AGENT_LIMITS,
): AgentEndpoint {
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
        if (!told) {
          told = true;
          logger.error("The HAProxy agent cannot accept a connection: {error}; going on.", {
            error: describeError(err),
          });
        }
        await pause(limits.acceptPauseMs, signal);
        continue;
      }
      if (open.size >= limits.maxConnections) {
        const oldest = open.values().next().value;
        if (oldest !== undefined) {
          // its answer went out when it came; its answerOne ends on the closed connection
          closeQuietly(oldest);
          open.delete(oldest);
        }
      }
      open.add(conn);
      const one = answerOne(conn, agentLine(state()), limits).finally(() => {
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

/** Writes `line`, closes the write side, drops what the client sends until it closes. */
async function answerOne(conn: Deno.Conn, line: string, limits: AgentLimits): Promise<void> {
  // closing the connection is what ends a pending read or write (platform-facts.md §d)
  const timer = setTimeout(() => closeQuietly(conn), limits.connectionMs);
  try {
    let rest = encoder.encode(line);
    while (rest.length > 0) rest = rest.subarray(await conn.write(rest));
    await conn.closeWrite();
    // read what the client sent (agent-send) before closing, so that the close is a FIN, not
    // a reset that could take the answer with it
    const buffer = new Uint8Array(256);
    let read = 0;
    while (read < limits.maxRequestBytes) {
      const n = await conn.read(buffer);
      if (n === null) break;
      read += n;
    }
  } catch {
    // a client gone, or too slow: its connection is closed, nothing else changes
  } finally {
    clearTimeout(timer);
  }
}
