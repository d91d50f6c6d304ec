import assert from "node:assert/strict";
import { classifyError, directHttpGet, probeHttp } from "../../src/probe/http.ts";
import { labelOf, type ProbeResult, verdictOf } from "../../src/probe/result.ts";
import { fetchErrors } from "../support/fakes.ts";

const status = (s: number): ProbeResult => ({ kind: "status", status: s, detail: "", ms: 1 });

Deno.test("verdict of every status class", () => {
  for (const s of [200, 201, 204, 299]) assert.equal(verdictOf(status(s)), "healthy", `${s}`);
  for (const s of [500, 502, 503, 504]) assert.equal(verdictOf(status(s)), "php_down", `${s}`);
  for (const s of [301, 302, 304, 400, 401, 403, 404, 444, 501, 505, 199]) {
    assert.equal(verdictOf(status(s)), "misconfigured", `${s}`);
  }
});

Deno.test("verdict of every failure kind", () => {
  const of = (kind: ProbeResult["kind"]) => verdictOf({ kind, detail: "", ms: 1 });
  assert.equal(of("timeout"), "php_down");
  assert.equal(of("refused"), "unreachable");
  assert.equal(of("dns"), "unreachable");
  assert.equal(of("closed"), "misconfigured");
  assert.equal(of("error"), "misconfigured");
});

Deno.test("classifyError reads Deno's fetch errors", () => {
  assert.equal(classifyError(fetchErrors.timeout()).kind, "timeout");
  assert.equal(classifyError(fetchErrors.refused()).kind, "refused");
  assert.equal(classifyError(fetchErrors.dns()).kind, "dns");
  assert.equal(classifyError(fetchErrors.closed()).kind, "closed");
  assert.equal(classifyError(fetchErrors.tls()).kind, "error");
  assert.equal(classifyError(new TypeError("Invalid URL")).kind, "error");
  assert.match(classifyError(fetchErrors.refused()).detail, /Connection refused/);
});

Deno.test("labels: the status, or the failure kind", () => {
  assert.equal(labelOf(status(502)), "502");
  assert.equal(labelOf({ kind: "timeout", detail: "", ms: 1 }), "timeout");
});

/** Real loopback servers, as nginx would behave in each case. */
async function withServer(
  handler: (req: Request) => Response | Promise<Response>,
  fn: (base: string, seen: { path: string; host: string | null }[]) => Promise<void>,
) {
  const seen: { path: string; host: string | null }[] = [];
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    (req) => {
      seen.push({ path: new URL(req.url).pathname, host: req.headers.get("host") });
      return handler(req);
    },
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, seen);
  } finally {
    ac.abort();
    await server.finished;
  }
}

const probe = (url: string, timeoutMs = 2000, expect = "") =>
  probeHttp(new URL(url), timeoutMs, expect, directHttpGet, Date.now);

Deno.test("real HTTP: 200 healthy, 502 php_down, 404 misconfigured", async () => {
  await withServer((req) => {
    const code = Number(new URL(req.url).pathname.slice(1));
    return new Response(`status ${code}`, { status: code });
  }, async (base) => {
    assert.equal(verdictOf(await probe(`${base}/200`)), "healthy");
    const bad = await probe(`${base}/502`);
    assert.equal(bad.status, 502);
    assert.equal(verdictOf(bad), "php_down");
    assert.equal(verdictOf(await probe(`${base}/404`)), "misconfigured");
  });
});

Deno.test("real HTTP: a redirect is reported, not followed", async () => {
  await withServer(
    (req) =>
      new URL(req.url).pathname === "/moved"
        ? new Response(null, { status: 302, headers: { location: "/elsewhere" } })
        : new Response("ok"),
    async (base, seen) => {
      const r = await probe(`${base}/moved`);
      assert.equal(r.status, 302);
      assert.match(r.detail, /redirect to \/elsewhere/);
      assert.equal(seen.length, 1);
    },
  );
});

Deno.test("real HTTP: a body in several chunks is read whole, a huge one only in part", async () => {
  const bytes = new TextEncoder().encode("pong \u00e9t\u00e9");
  const chunked = () =>
    new ReadableStream<Uint8Array>({
      async start(c) {
        // "é" split across two chunks, the chunks apart in time
        for (const part of [bytes.subarray(0, 6), bytes.subarray(6, 9), bytes.subarray(9)]) {
          c.enqueue(part);
          await new Promise((r) => setTimeout(r, 20));
        }
        c.close();
      },
    });
  await withServer(
    (req) =>
      new URL(req.url).pathname === "/huge"
        ? new Response("x".repeat(1024 * 1024))
        : new Response(chunked()),
    async (base) => {
      const got = await directHttpGet(new URL(`${base}/chunks`), AbortSignal.timeout(5000));
      assert.equal(got.body, "pong \u00e9t\u00e9");
      const huge = await directHttpGet(new URL(`${base}/huge`), AbortSignal.timeout(5000));
      assert.equal(huge.status, 200);
      assert.equal(huge.body, "x".repeat(16 * 1024));
    },
  );
});

Deno.test("real HTTP: hung server and slow body are timeouts", async () => {
  const hang = new AbortController();
  await withServer(async (req) => {
    if (new URL(req.url).pathname === "/hang") {
      await new Promise((r) => hang.signal.addEventListener("abort", r));
      return new Response("late");
    }
    const body = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode("partial"));
        hang.signal.addEventListener("abort", () => c.close());
      },
    });
    return new Response(body);
  }, async (base) => {
    try {
      const hung = await probe(`${base}/hang`, 300);
      assert.equal(hung.kind, "timeout");
      assert.ok(hung.ms >= 250, `timed out after ${hung.ms} ms`);
      assert.equal((await probe(`${base}/slow-body`, 300)).kind, "timeout");
    } finally {
      hang.abort();
    }
  });
});

Deno.test("real TCP: refused, closed without an answer, unknown host", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  // nginx's 444: accept, then close without a byte
  const closer = (async () => {
    for await (const conn of listener) conn.close();
  })();
  try {
    assert.equal((await probe(`http://127.0.0.1:${port}/`)).kind, "closed");
  } finally {
    listener.close();
    await closer.catch(() => {});
  }
  assert.equal((await probe(`http://127.0.0.1:${port}/`)).kind, "refused");
  assert.equal((await probe("http://heartbeat.invalid/")).kind, "dns");
});

Deno.test("real HTTP: proxies from the environment are ignored; the URL's host is the vhost", async () => {
  const saved = Deno.env.get("HTTP_PROXY");
  // a proxy that refuses everything: using it would turn the probe into "refused"
  Deno.env.set("HTTP_PROXY", "http://127.0.0.1:9");
  try {
    await withServer(() => new Response("ok"), async (base, seen) => {
      const url = base.replace("127.0.0.1", "localhost");
      assert.equal(verdictOf(await probe(url)), "healthy");
      assert.equal(seen[0]?.host, new URL(url).host);
    });
  } finally {
    if (saved === undefined) Deno.env.delete("HTTP_PROXY");
    else Deno.env.set("HTTP_PROXY", saved);
  }
});

Deno.test("classifyError: a reset connection is 'closed'; fetch's URL and its token are cut", () => {
  for (
    const cause of [
      "error sending request for url (http://127.0.0.1:8889/hb?token=T0K): client error (SendRequest): connection error: Connection reset by peer (os error 104)",
      "error sending request from 127.0.0.1:1 for http://127.0.0.1:8889/hb?token=T0K (127.0.0.1:8889): client error (SendRequest): connection reset",
    ]
  ) {
    const c = classifyError(new TypeError("fetch failed", { cause: new Error(cause) }));
    assert.equal(c.kind, "closed", cause);
    assert.ok(!c.detail.includes("T0K"), c.detail);
  }
});

/** A raw TCP server that answers every connection with `reply` and then closes it. */
async function withRawServer(reply: string, fn: (base: string) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    for await (const conn of listener) {
      await conn.read(new Uint8Array(4096));
      await conn.write(new TextEncoder().encode(reply));
      await new Promise((r) => setTimeout(r, 20));
      conn.close();
    }
  })().catch(() => {});
  try {
    await fn(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
  } finally {
    listener.close();
    await served;
  }
}

Deno.test("real HTTP: an answer cut short is a php-fpm failure, not a setup error", async () => {
  await withRawServer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n127.0.0.1", async (base) => {
    const r = await probe(`${base}/hb?token=T0K`);
    assert.equal(r.kind, "cut");
    assert.equal(verdictOf(r), "php_down");
    assert.match(r.detail, /^the answer was cut short: /);
    assert.ok(!r.detail.includes("T0K"));
  });
});

Deno.test("real HTTP: expect holds for HTTP too: a 200 with another body is not health", async () => {
  await withServer((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/fatal") return new Response("<b>Fatal error</b>: Uncaught Error in hb.php");
    if (path === "/down") return new Response("Bad Gateway", { status: 502 });
    return new Response("\nok 127.0.0.1\n");
  }, async (base) => {
    const fatal = await probe(`${base}/fatal`, 2000, "ok");
    assert.equal(fatal.kind, "unexpected");
    assert.equal(verdictOf(fatal), "misconfigured");
    assert.match(
      fatal.detail,
      /^answered "<b>Fatal error<\/b>: Uncaught Error in hb", expected "ok"$/,
    );
    assert.equal(verdictOf(await probe(`${base}/ok`, 2000, "ok")), "healthy");
    assert.equal(verdictOf(await probe(`${base}/fatal`)), "healthy", "no expect: any 2xx");
    assert.equal(verdictOf(await probe(`${base}/down`, 2000, "ok")), "php_down");
  });
});
