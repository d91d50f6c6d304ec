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
import { type BoundedListener, closeQuietly, listenBounded } from "./bounded_listener.ts";

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
export type AgentEndpoint = BoundedListener;

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
  options: { keepTrying?: boolean } = {},
): AgentEndpoint {
  return listenBounded(
    listen,
    {
      what: "The HAProxy agent",
      maxConnections: limits.maxConnections,
      acceptPauseMs: limits.acceptPauseMs,
      // the oldest had its answer the moment it came
      makeRoom: (open) => open.values().next().value ?? null,
      serve: (conn) => answerOne(conn, agentLine(state()), limits),
    },
    signal,
    options,
  );
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
