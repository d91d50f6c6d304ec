import assert from "node:assert/strict";
import type { FcgiTarget } from "../../src/shared/deps.ts";
import { encodeRecord, RecordType } from "../../src/probe/fcgi_protocol.ts";
import { verdictOf } from "../../src/probe/result.ts";
import {
  classifyFcgiError,
  directFcgiGet,
  fcgiTargetOf,
  probeFcgi,
  requestParams,
} from "../../src/probe/fcgi.ts";
import { answerBytes, FakeResponder } from "../support/fcgi_server.ts";

const PONG = "Content-Type: text/plain\r\n\r\npong";

function tcpTarget(port: number, path = "/ping", query = ""): FcgiTarget {
  return { address: { transport: "tcp", hostname: "127.0.0.1", port }, path, query };
}

function probe(target: FcgiTarget, timeoutMs = 2000, expect = "pong") {
  return probeFcgi(target, timeoutMs, expect, directFcgiGet, Date.now);
}

Deno.test("fcgi:// and fcgi+unix:// URLs name the address, the script path and the query", () => {
  assert.deepEqual(fcgiTargetOf(new URL("fcgi://127.0.0.1:9000/ping")), tcpTarget(9000));
  assert.deepEqual(fcgiTargetOf(new URL("fcgi://[::1]:9001/status?json&full")), {
    address: { transport: "tcp", hostname: "::1", port: 9001 },
    path: "/status",
    query: "json&full",
  });
  assert.deepEqual(fcgiTargetOf(new URL("fcgi+unix:///run/php/php8.2-fpm.sock/ping")), {
    address: { transport: "unix", path: "/run/php/php8.2-fpm.sock" },
    path: "/ping",
    query: "",
  });
  assert.deepEqual(
    fcgiTargetOf(new URL("fcgi+unix:///run/php-fpm/www.socket/var/www/hb.php?x=1")),
    {
      address: { transport: "unix", path: "/run/php-fpm/www.socket" },
      path: "/var/www/hb.php",
      query: "x=1",
    },
  );
  assert.match(String(fcgiTargetOf(new URL("fcgi://127.0.0.1/ping"))), /HOST:PORT/);
  assert.match(String(fcgiTargetOf(new URL("fcgi+unix:///run/php/fpm/ping"))), /SOCKET\.sock/);
  assert.match(String(fcgiTargetOf(new URL("fcgi+unix://host/x.sock/ping"))), /SOCKET\.sock/);
});

Deno.test("the request carries the CGI parameters php-fpm matches ping and status paths on", async () => {
  const server = FakeResponder.tcp(() => ({ answer: PONG }));
  try {
    const result = await probe(tcpTarget(server.port, "/status", "json&full"), 2000, "");
    assert.equal(result.kind, "status");
    const params = server.requests[0]!;
    assert.equal(params.get("SCRIPT_NAME"), "/status");
    assert.equal(params.get("SCRIPT_FILENAME"), "/status");
    assert.equal(params.get("QUERY_STRING"), "json&full");
    assert.equal(params.get("REQUEST_URI"), "/status?json&full");
    assert.equal(params.get("REQUEST_METHOD"), "GET");
    assert.deepEqual(
      Object.fromEntries(params),
      requestParams(tcpTarget(server.port, "/status", "json&full")),
    );
  } finally {
    await server.close();
  }
});

Deno.test("pong over TCP is healthy; another body is a misconfiguration", async () => {
  const server = FakeResponder.tcp((p) => ({
    answer: p.get("SCRIPT_NAME") === "/ping" ? PONG : "Status: 200\r\n\r\n<html>",
  }));
  try {
    const ok = await probe(tcpTarget(server.port));
    assert.equal(ok.kind, "status");
    assert.equal(ok.status, 200);
    assert.equal(ok.via, "fcgi");
    assert.equal(verdictOf(ok), "healthy");
    const other = await probe(tcpTarget(server.port, "/other"));
    assert.equal(other.kind, "unexpected");
    assert.equal(verdictOf(other), "misconfigured");
    assert.match(other.detail, /expected "pong"/);
  } finally {
    await server.close();
  }
});

Deno.test("a unix socket answers the same way; a missing socket is php-fpm down", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/fpm.sock`;
  const server = FakeResponder.unix(path, () => ({ answer: "Status: 503\r\n\r\nbusy" }));
  try {
    const target: FcgiTarget = { address: { transport: "unix", path }, path: "/ping", query: "" };
    const r = await probe(target);
    assert.equal(r.status, 503);
    assert.equal(verdictOf(r), "php_down");
    const gone = await probe({ ...target, address: { transport: "unix", path: `${dir}/no.sock` } });
    assert.equal(gone.kind, "refused");
    assert.equal(verdictOf(gone), "php_down", "straight to php-fpm, refused means php-fpm is gone");
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a refused TCP port is php-fpm down, not nginx down", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const r = await probe(tcpTarget(port));
  assert.equal(r.kind, "refused");
  assert.equal(verdictOf(r), "php_down");
});

Deno.test("a responder that never answers is a timeout within the deadline, over TCP and unix", async () => {
  const dir = await Deno.makeTempDir();
  const tcp = FakeResponder.tcp(() => ({ hang: true }));
  const unix = FakeResponder.unix(`${dir}/hung.sock`, () => ({ hang: true }));
  try {
    for (
      const target of [
        tcpTarget(tcp.port),
        {
          address: { transport: "unix" as const, path: `${dir}/hung.sock` },
          path: "/ping",
          query: "",
        },
      ]
    ) {
      const started = Date.now();
      const r = await probe(target, 300);
      assert.equal(r.kind, "timeout");
      assert.equal(verdictOf(r), "php_down");
      assert.ok(Date.now() - started < 5000, "bounded by the deadline, not hung");
    }
  } finally {
    await tcp.close();
    await unix.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a responder that closes without answering is a worker gone mid-request", async () => {
  const server = FakeResponder.tcp(() => ({ close: true }));
  try {
    const r = await probe(tcpTarget(server.port));
    assert.equal(r.kind, "closed");
    assert.match(r.detail, /closed before END_REQUEST/);
    assert.equal(verdictOf(r), "php_down");
  } finally {
    await server.close();
  }
});

Deno.test("END_REQUEST with OVERLOADED is reported as such", async () => {
  const server = FakeResponder.tcp(() => ({ raw: answerBytes(1, "", 2) }));
  try {
    const r = await probe(tcpTarget(server.port));
    assert.equal(r.kind, "error");
    assert.match(r.detail, /overloaded/);
  } finally {
    await server.close();
  }
});

Deno.test("an endless answer stops at the size limit instead of filling memory", async () => {
  const big = encodeRecord(RecordType.Stdout, 1, new Uint8Array(65_535));
  const raw = new Uint8Array(big.length * 80);
  for (let i = 0; i < 80; i++) raw.set(big, i * big.length);
  const server = FakeResponder.tcp(() => ({ raw }));
  try {
    const r = await probe(tcpTarget(server.port), 5000);
    assert.equal(r.kind, "error");
    assert.match(r.detail, /longer than/);
  } finally {
    await server.close();
  }
});

Deno.test("fuzz over the wire: random bytes from a peer end as an error result, never a crash or hang", async () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const valid = answerBytes(1, PONG);
  const server = FakeResponder.tcp(() => {
    const bytes = random() < 0.5
      ? Uint8Array.from({ length: Math.floor(random() * 300) }, () => random() * 256)
      : valid.map((b) => (random() < 0.05 ? Math.floor(random() * 256) : b));
    return { raw: bytes };
  });
  try {
    const kinds = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const r = await probe(tcpTarget(server.port), 1000);
      kinds.add(r.kind);
      assert.ok(["status", "unexpected", "error", "closed", "timeout"].includes(r.kind), r.kind);
    }
    assert.ok(kinds.has("error"), [...kinds].join(","));
  } finally {
    await server.close();
  }
});

Deno.test("connection errors are classified by their Deno error class", () => {
  assert.equal(classifyFcgiError(new Deno.errors.WouldBlock("EAGAIN")).kind, "overloaded");
  assert.equal(classifyFcgiError(new Deno.errors.ConnectionReset("reset")).kind, "closed");
  assert.equal(
    classifyFcgiError(new Error("failed to lookup address information: Name or service not known"))
      .kind,
    "dns",
  );
  assert.equal(verdictOf({ kind: "overloaded", detail: "", ms: 1, via: "fcgi" }), "php_down");
  assert.equal(verdictOf({ kind: "closed", detail: "", ms: 1, via: "fcgi" }), "php_down");
  assert.equal(verdictOf({ kind: "closed", detail: "", ms: 1 }), "misconfigured");
  assert.equal(verdictOf({ kind: "refused", detail: "", ms: 1 }), "unreachable");
});
