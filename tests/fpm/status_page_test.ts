import assert from "node:assert/strict";
import {
  assessPool,
  isPoolName,
  MAX_STATUS_TEXT,
  MAX_STATUS_WORKERS,
  parseStatus,
  readStatus,
  stuckWorkers,
  warningsOf,
} from "../../src/fpm/status_page.ts";
import { FakeClock, scriptedFcgi } from "../support/fakes.ts";
import { REAL_STATUS, statusJson, statusOf } from "../support/pool.ts";

Deno.test("php-fpm's JSON status becomes counters and workers (durations in ms)", () => {
  const s = parseStatus(REAL_STATUS);
  assert.ok(typeof s !== "string", String(s));
  assert.equal(s.pool, "x");
  assert.equal(s.pm, "static");
  assert.equal(s.idle, 2);
  assert.equal(s.total, 2);
  assert.equal(s.workers.length, 2);
  assert.deepEqual(s.workers[0], {
    pid: 27729,
    state: "Idle",
    requests: 1,
    durationMs: 0,
    method: "GET",
    uri: "/ping",
    script: "-",
    cpu: 0,
    memory: 2097152,
    startedAt: 1795644330000,
  });
});

Deno.test("a status without workers (no &full) still parses; others are explained", () => {
  const brief = parseStatus(REAL_STATUS.replace(/, "processes":\[.*\]\}$/, "}"));
  assert.ok(typeof brief !== "string" && brief.workers.length === 0);
  assert.match(String(parseStatus("pool: www\nprocess manager: static")), /not JSON.*\?json/);
  assert.match(String(parseStatus('{"hello":1}')), /not php-fpm's status/);
});

Deno.test("readStatus asks for json&full and turns failures into sentences", async () => {
  const clock = new FakeClock();
  const fcgi = scriptedFcgi(clock, [
    { status: 200, body: REAL_STATUS },
    { status: 404, body: "File not found." },
    { error: new DOMException("t", "TimeoutError") },
  ]);
  const target = {
    address: { transport: "tcp" as const, hostname: "127.0.0.1", port: 9001 },
    path: "/status",
    query: "",
  };
  assert.equal(typeof await readStatus(target, 1000, fcgi), "object");
  assert.equal(fcgi.calls[0]?.query, "json&full");
  assert.equal(await readStatus(target, 1000, fcgi), "the status page answered 404");
  assert.equal(
    await readStatus(target, 1000, fcgi),
    "the status page did not answer within 1000 ms",
  );
});

Deno.test("busy or hung: idle workers or new requests mean busy; nothing moving means hung", () => {
  const hung = statusOf({});
  const moved = statusOf({
    workers: hung.workers.map((w) => ({ ...w, requests: w.requests + 1 })),
  });
  assert.equal(assessPool(hung, statusOf({ idleWorkers: 1 }), 0).verdict, "busy");
  assert.equal(assessPool(hung, moved, 0).verdict, "busy");
  assert.match(assessPool(hung, moved, 0).why, /2 new requests/);
  assert.equal(assessPool(hung, hung, 0).verdict, "hung");
  // our own status request served by a pool worker is not the pool making progress
  const oneMore = statusOf({
    workers: hung.workers.map((w, i) => ({ ...w, requests: w.requests + (i === 0 ? 1 : 0) })),
  });
  assert.equal(assessPool(hung, oneMore, 1).verdict, "hung");
  assert.equal(assessPool(hung, oneMore, 0).verdict, "busy");
  assert.deepEqual(assessPool(hung, "the status page did not answer within 1500 ms", 0), {
    verdict: "hung",
    why: "the status page did not answer within 1500 ms",
  });
});

Deno.test("stuck workers: busy on one request at least the limit", () => {
  const s = statusOf({ busy: 2, idleWorkers: 1, seconds: 40 });
  assert.deepEqual(stuckWorkers(s, 30_000).map((w) => w.pid), [200, 201]);
  assert.deepEqual(stuckWorkers(s, 60_000), []);
});

Deno.test("early warnings: listen queue twice above the limit, max children reached grows, slow requests jump", () => {
  const limits = { listenQueue: 5, slowRequests: 3, maxChildren: true };
  const base = statusOf({});
  assert.deepEqual(warningsOf(base, base, limits), []);
  const queued = statusOf({ listenQueue: 9 });
  assert.deepEqual(warningsOf(queued, queued, limits).map((w) => w.kind), ["listen_queue"]);
  assert.deepEqual(warningsOf(base, queued, limits), [], "one read above is not 'stays above'");
  const reached = statusOf({ maxChildrenReached: 4 });
  const w = warningsOf({ ...base, maxChildrenReached: 3 }, reached, limits);
  assert.deepEqual(w.map((x) => x.kind), ["max_children"]);
  assert.match(w[0]!.message, /max children reached 4 times \(was 3\)/);
  assert.deepEqual(
    warningsOf(base, statusOf({ slowRequests: 3 }), limits).map((x) => x.kind),
    ["slow_requests"],
  );
  assert.deepEqual(warningsOf(base, statusOf({ slowRequests: 2 }), limits), []);
  // a restarted pool starts its counters at 0 again: no warning for going down
  assert.deepEqual(warningsOf(reached, base, limits), []);
  const off = { listenQueue: 0, slowRequests: 0, maxChildren: false };
  assert.deepEqual(
    warningsOf(base, statusOf({ listenQueue: 50, slowRequests: 9, maxChildrenReached: 9 }), off),
    [],
  );
});

Deno.test("whoever answers on the status socket: a pool's name must be one, texts and workers are bounded", () => {
  const page = JSON.parse(statusJson(statusOf({ busy: 2 }))) as Record<string, unknown> & {
    processes: Record<string, unknown>[];
  };
  const huge = parseStatus(JSON.stringify({ ...page, pool: "p".repeat(1_500_000) }));
  assert.equal(huge, "not php-fpm's status: pool");
  assert.equal(
    parseStatus(JSON.stringify({ ...page, pool: "www\x1b[2J" })),
    "not php-fpm's status: pool",
  );
  const long = parseStatus(JSON.stringify({
    ...page,
    processes: Array.from({ length: 2000 }, (_, i) => ({
      ...page.processes[0],
      pid: i + 1,
      "request uri": `/${"x".repeat(10_000)}`,
      "request duration": i,
    })),
  }));
  assert.ok(typeof long !== "string");
  assert.equal(long.workers.length, MAX_STATUS_WORKERS);
  assert.equal(long.workers[0]!.pid, 2000, "the longest-busy are kept");
  assert.ok(long.workers.every((w) => w.uri.length <= MAX_STATUS_TEXT + 1));
  assert.ok(JSON.stringify(long).length < 400_000, "what is kept is small");
  assert.ok(isPoolName("shop.example.com") && isPoolName("site_1") && !isPoolName("-x"));
});
