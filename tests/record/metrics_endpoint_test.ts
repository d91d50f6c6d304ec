/**
 * The /metrics endpoint against hostile clients on loopback: hundreds of idle connections, a
 * client that sends half a request and stops, one that never reads its answer. It serves
 * Prometheus all the same, holds only a few connections, and stops cleanly.
 */
import assert from "node:assert/strict";
import { type EndpointLimits, serveMetricsEndpoint } from "../../src/record/metrics_endpoint.ts";
import { captureLogs } from "../support/fakes.ts";

const LIMITS: EndpointLimits = {
  maxConnections: 4,
  connectionMs: 300,
  headMs: 200,
  evictAfterMs: 60,
  maxRequestBytes: 1024,
  acceptPauseMs: 50,
};

async function withEndpoint(
  fn: (port: number, open: () => number) => Promise<void>,
  render: () => Promise<string> = () => Promise.resolve("php_relaunch_up 1\n"),
  limits: Partial<EndpointLimits> = {},
) {
  const stop = new AbortController();
  const endpoint = serveMetricsEndpoint({ hostname: "127.0.0.1", port: 0 }, render, stop.signal, {
    ...LIMITS,
    ...limits,
  });
  try {
    await fn(endpoint.port, () => endpoint.open);
  } finally {
    stop.abort();
    await endpoint.finished;
  }
}

/** Closes what the endpoint has not closed already. */
function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed by the endpoint */ }
  }
}

async function get(port: number, path = "/metrics"): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
}

Deno.test("metrics endpoint: a scrape, a wrong path, a wrong method", async () => {
  captureLogs();
  await withEndpoint(async (port) => {
    assert.deepEqual(await get(port), { status: 200, body: "php_relaunch_up 1\n" });
    assert.equal((await get(port, "/")).status, 404);
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST", body: "x" });
    await post.body?.cancel();
    assert.equal(post.status, 405);
  });
});

Deno.test("metrics endpoint: hundreds of idle connections are held at most a moment, a few at a time", async () => {
  captureLogs();
  await withEndpoint(async (port, open) => {
    const idle: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      // a half request that never ends, on top
      const half = await Deno.connect({ hostname: "127.0.0.1", port });
      idle.push(half);
      await half.write(new TextEncoder().encode("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(open() <= LIMITS.maxConnections, `${open()} connections held`);
      // once the idle ones are past their time, Prometheus is served again
      await new Promise((r) => setTimeout(r, LIMITS.connectionMs + 200));
      assert.equal((await get(port)).status, 200);
    } finally {
      closeAll(idle);
    }
  });
});

Deno.test("metrics endpoint: idle connections held open and renewed cannot keep a scrape out", async () => {
  captureLogs();
  await withEndpoint(async (port) => {
    const idle: Deno.Conn[] = [];
    try {
      // the endpoint's every place taken by connections that send nothing
      for (let i = 0; i < LIMITS.maxConnections; i++) {
        idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      await new Promise((r) => setTimeout(r, LIMITS.evictAfterMs + 20));
      // a scrape at once, while they are all still within their time
      assert.equal((await get(port)).status, 200);
    } finally {
      closeAll(idle);
    }
  });
});

Deno.test("metrics endpoint: a flood of newcomers cannot push out a scrape just arrived", async () => {
  captureLogs();
  await withEndpoint(
    async (port) => {
      const flood: Deno.Conn[] = [];
      const scrape = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        for (let i = 0; i < 50; i++) {
          flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        }
        // the scrape's request, within the time a newcomer must wait to take its place
        await scrape.write(new TextEncoder().encode("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        const answer = new Uint8Array(4096);
        const n = await scrape.read(answer);
        assert.ok(n !== null, "the scrape's connection was kept");
        assert.match(new TextDecoder().decode(answer.subarray(0, n)), /^HTTP\/1\.1 200 OK\r\n/);
      } finally {
        closeAll([scrape, ...flood]);
      }
      // (a generous wait, for a slow machine: what is tested is that there is one)
    },
    undefined,
    { evictAfterMs: 3000, connectionMs: 5000, headMs: 5000 },
  );
});

Deno.test("metrics endpoint: a render that fails is a 500, and the next scrape is served", async () => {
  const logs = captureLogs();
  // a render that fails is a 500, not a crash
  let fail = true;
  await withEndpoint(async (port) => {
    assert.equal((await get(port)).status, 500);
    fail = false;
    assert.equal((await get(port)).status, 200);
  }, () => fail ? Promise.reject(new Error("no metrics")) : Promise.resolve("ok\n"));
  assert.deepEqual(logs.lines(), []);
});
