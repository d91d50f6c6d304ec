/**
 * HAProxy's agent-check on loopback, over real TCP: the line HAProxy reads, with or without its
 * agent-send text; clients that never send, never read or never close hold nobody up; the open
 * connections stay bounded; and it stops cleanly.
 */
import assert from "node:assert/strict";
import {
  type AgentLimits,
  agentLine,
  type AgentState,
  serveAgentCheck,
} from "../../src/record/agent_check.ts";
import { captureLogs } from "../support/fakes.ts";

const LIMITS: AgentLimits = {
  maxConnections: 4,
  connectionMs: 400,
  maxRequestBytes: 1024,
  acceptPauseMs: 50,
};

async function withAgent(
  fn: (port: number, open: () => number) => Promise<void>,
  state: () => AgentState = () => "up",
) {
  const stop = new AbortController();
  const agent = serveAgentCheck({ hostname: "127.0.0.1", port: 0 }, state, stop.signal, LIMITS);
  try {
    await fn(agent.port, () => agent.open);
  } finally {
    stop.abort();
    await agent.finished;
  }
}

/** What HAProxy does: connect, maybe send, read to the end; the text read, within 3 s. */
async function ask(port: number, send = ""): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 3000);
  try {
    if (send !== "") await conn.write(new TextEncoder().encode(send));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(256);
    for (let i = 0; i < 100; i++) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed by the agent */ }
  }
}

Deno.test("agent-check: one line, up ready or up drain, as the state says at each connection", async () => {
  captureLogs();
  let state: AgentState = "up";
  await withAgent(async (port) => {
    assert.equal(await ask(port), "up ready\n");
    state = "drain";
    assert.equal(await ask(port), "up drain\n");
    // agent-send text, as HAProxy sends it: read and let go; the answer is the same
    assert.equal(await ask(port, "php8.2-fpm\n"), "up drain\n");
    state = "up";
    assert.equal(await ask(port, "x".repeat(5000)), "up ready\n");
  }, () => state);
  assert.equal(agentLine("up"), "up ready\n");
  assert.equal(agentLine("drain"), "up drain\n");
});

Deno.test("agent-check: silent clients that never read nor close block no one, and stay bounded", async () => {
  captureLogs();
  await withAgent(async (port, open) => {
    const idle: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 40; i++) idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      const started = performance.now();
      assert.equal(await ask(port), "up ready\n");
      assert.ok(performance.now() - started < 300, "answered at once, beside them");
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(open() <= LIMITS.maxConnections, `${open()} open`);
    } finally {
      closeAll(idle);
    }
  });
});

Deno.test("agent-check: a connection is closed by its deadline whatever its client does", async () => {
  captureLogs();
  await withAgent(async (port, open) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      // it sends forever and never reads to the end: the agent ends it
      await conn.write(new TextEncoder().encode("a"));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(open(), 1);
      await new Promise((r) => setTimeout(r, LIMITS.connectionMs + 200));
      assert.equal(open(), 0);
    } finally {
      closeAll([conn]);
    }
  });
});

Deno.test("agent-check: stopping closes the listener and every connection", async () => {
  captureLogs();
  const stop = new AbortController();
  const agent = serveAgentCheck(
    { hostname: "127.0.0.1", port: 0 },
    () => "up",
    stop.signal,
    LIMITS,
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: agent.port });
  stop.abort();
  await agent.finished;
  assert.equal(agent.open, 0);
  closeAll([conn]);
  await assert.rejects(() => Deno.connect({ hostname: "127.0.0.1", port: agent.port }));
});
