import assert from "node:assert/strict";
import { choosePool, defaultFpmConfig, isOff, readFpmConfig } from "../../src/fpm/config.ts";
import { fakeFs } from "../support/fakes.ts";

/** Debian's layout: php-fpm.conf includes pool.d/*.conf. */
const debian = fakeFs({
  dirs: { "/etc/php/8.2/fpm/pool.d": ["www.conf", "api.conf", "README"] },
  files: {
    "/etc/php/8.2/fpm/php-fpm.conf": [
      "[global]",
      "pid = /run/php/php8.2-fpm.pid",
      "error_log = /var/log/php8.2-fpm.log",
      "; a comment",
      "include=/etc/php/8.2/fpm/pool.d/*.conf",
    ].join("\n"),
    "/etc/php/8.2/fpm/pool.d/www.conf": [
      "[www]",
      "user = www-data",
      "listen = /run/php/php8.2-fpm.sock",
      "pm = dynamic",
      "pm.max_children = 5",
      ";request_terminate_timeout = 0",
      "request_slowlog_timeout = 5s",
      'slowlog = "/var/log/php-fpm/$pool.slow.log"',
      "pm.status_path = /status",
      "pm.status_listen = 127.0.0.1:9001",
      "ping.path = /ping",
    ].join("\n"),
    "/etc/php/8.2/fpm/pool.d/api.conf": [
      "[api]",
      "listen = 127.0.0.1:9002",
      "pm = static",
      "pm.max_children = 20",
      "request_terminate_timeout = 60s",
    ].join("\n"),
  },
});

Deno.test("php-fpm.conf and its included pool files: error log and each pool's settings", async () => {
  const c = await readFpmConfig(debian, "/etc/php/8.2/fpm/php-fpm.conf");
  assert.ok(c);
  assert.equal(c.errorLog, "/var/log/php8.2-fpm.log");
  assert.equal(c.pid, "/run/php/php8.2-fpm.pid");
  assert.deepEqual(c.pools.map((p) => p.pool), ["www", "api"].sort());
  const www = c.pools.find((p) => p.pool === "www")!;
  assert.deepEqual(www, {
    pool: "www",
    pm: "dynamic",
    maxChildren: 5,
    requestTerminateTimeout: null,
    requestSlowlogTimeout: "5s",
    listen: "/run/php/php8.2-fpm.sock",
    statusPath: "/status",
    statusListen: "127.0.0.1:9001",
    pingPath: "/ping",
    slowlog: "/var/log/php-fpm/www.slow.log",
    user: "www-data",
    file: "/etc/php/8.2/fpm/pool.d/www.conf",
  });
});

Deno.test("the pool: named by the status page, else by the probe's listen, else the only one", async () => {
  const c = (await readFpmConfig(debian, "/etc/php/8.2/fpm/php-fpm.conf"))!;
  assert.equal(choosePool(c, "api", null)?.pool, "api");
  assert.equal(choosePool(c, null, "/run/php/php8.2-fpm.sock")?.pool, "www");
  assert.equal(choosePool(c, null, null), null, "two pools and no clue");
  assert.equal(choosePool({ errorLog: null, pools: [c.pools[0]!] }, null, null), c.pools[0]);
});

Deno.test("an unreadable php-fpm.conf gives nothing, never an error", async () => {
  assert.equal(await readFpmConfig(fakeFs({}), "/etc/php/8.2/fpm/php-fpm.conf"), null);
});

Deno.test("php-fpm.conf's place follows the service, on Debian, RHEL and FreeBSD", () => {
  assert.equal(defaultFpmConfig("php8.2-fpm"), "/etc/php/8.2/fpm/php-fpm.conf");
  assert.equal(defaultFpmConfig("php-fpm"), "/etc/php-fpm.conf");
  assert.equal(defaultFpmConfig("php_fpm"), "/usr/local/etc/php-fpm.conf");
  assert.equal(defaultFpmConfig("custom"), null);
});

Deno.test("php-fpm durations that mean off", () => {
  for (const off of [null, "0", "0s", "00"]) assert.equal(isOff(off), true, String(off));
  for (const on of ["30s", "5m", "300"]) assert.equal(isOff(on), false, on);
});
