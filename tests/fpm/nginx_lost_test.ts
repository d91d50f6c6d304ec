/** The requests nginx's error log names as lost when php-fpm's children died. */
import assert from "node:assert/strict";
import { lostRequests, readLostRequests } from "../../src/fpm/nginx_lost.ts";
import { fakeFs } from "../support/fakes.ts";

const sec = (h: number, m: number, s: number) =>
  Math.floor(new Date(2026, 11, 3, h, m, s).getTime() / 1000);

const line = (time: string, what: string, request: string, upstream = "unix:/run/php/www.sock:") =>
  `2026/12/03 ${time} [error] 812#812: *41 ${what} while reading response header from upstream, client: 127.0.0.1, server: shop, request: "${request}", upstream: "fastcgi://${upstream}", host: "shop.example"`;

const CLOSED = "upstream prematurely closed connection";
const RESET = "recv() failed (104: Connection reset by peer)";

Deno.test("nginx lost: the URIs at the crashes' seconds, most often first", () => {
  const lines = [
    line("10:00:01", CLOSED, "GET /cart.php HTTP/1.1"),
    line("10:00:02", RESET, "GET /cart.php?id=3 HTTP/1.1"),
    line("10:00:02", CLOSED, "POST /checkout.php HTTP/2.0"),
    line("10:00:03", CLOSED, "GET /cart.php HTTP/1.1"),
    // long before: another story
    line("09:00:00", CLOSED, "GET /old.php HTTP/1.1"),
    // another pool's upstream
    line("10:00:02", CLOSED, "GET /blog.php HTTP/1.1", "unix:/run/php/blog.sock:"),
    // another error at the same second
    `2026/12/03 10:00:02 [error] 812#812: *9 connect() to unix:/run/php/www.sock failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: shop, request: "GET /down.php HTTP/1.1"`,
  ];
  assert.deepEqual(
    lostRequests(lines, new Set([sec(10, 0, 2)]), "/run/php/www.sock"),
    [
      { request: "GET /cart.php", count: 2 },
      { request: "GET /cart.php?id=3", count: 1 },
      { request: "POST /checkout.php", count: 1 },
    ],
  );
  assert.equal(
    lostRequests(lines, new Set([sec(10, 0, 2)]), null).length,
    4,
    "without the pool's address, any upstream",
  );
  assert.deepEqual(
    lostRequests(
      [line("10:00:02", CLOSED, "GET /a HTTP/1.1", "127.0.0.1:9000")],
      new Set([sec(10, 0, 2)]),
      "127.0.0.1:9000",
    ),
    [{ request: "GET /a", count: 1 }],
  );
});

Deno.test("nginx lost: what www-data writes is kept as written, bounded; escaping is the alert's", () => {
  const long = `GET /${"x".repeat(500)} HTTP/1.1`;
  const forged = line("10:00:02", CLOSED, "GET /\u001b[31mred\u202e HTTP/1.1");
  const lost = lostRequests(
    [line("10:00:02", CLOSED, long), forged],
    new Set([sec(10, 0, 2)]),
    null,
  );
  assert.equal(lost.length, 2);
  assert.ok(lost.every((l) => l.request.length <= 201), "cut at 200 characters");
  assert.ok(lost.some((l) => l.request.includes("\u001b")), "kept as nginx's log says it");
  const many = Array.from(
    { length: 30 },
    (_, i) => line("10:00:02", CLOSED, `GET /p${i} HTTP/1.1`),
  );
  assert.equal(lostRequests(many, new Set([sec(10, 0, 2)]), null).length, 10, "at most 10");
});

Deno.test("nginx lost: the log is read as www-data's file, with its owners; refusals are said", async () => {
  const path = "/var/log/nginx/error.log";
  const fs = fakeFs({
    files: { [path]: line("10:00:02", CLOSED, "GET /cart.php HTTP/1.1") + "\n" },
    owners: { [path]: 33 },
  });
  assert.deepEqual(
    await readLostRequests(fs, path, [0, 33], new Set([sec(10, 0, 2)]), null),
    { lost: [{ request: "GET /cart.php", count: 1 }] },
  );
  assert.deepEqual(
    await readLostRequests(fs, path, [0], new Set([sec(10, 0, 2)]), null),
    { error: "it is owned by uid 33" },
  );
  assert.deepEqual(
    await readLostRequests(fs, "/var/log/nginx/none.log", [0], new Set(), null),
    { error: "it does not exist" },
  );
});
