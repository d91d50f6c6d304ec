import assert from "node:assert/strict";
import { bindConflict, boundAddress } from "../../src/fpm/bind_conflict.ts";
import { holdersOf } from "../../src/fpm/socket_holder.ts";
import { DEBIAN_TOOLS, fakeFs, FakeRunner } from "../support/fakes.ts";

/** What php-fpm 8.2 wrote when another process held its status port (seen on Debian 12). */
const LOG = [
  "[03-Dec-2026 09:50:01] NOTICE: fpm is running, pid 2210",
  "[03-Dec-2026 09:51:12] ERROR: unable to bind listening socket for address '127.0.0.1:9001': Address already in use (98)",
  "[03-Dec-2026 09:51:12] ERROR: FPM initialization failed",
  "",
].join("\n");

Deno.test("bind conflict: the address from php-fpm's error log, the holder from ss", () => {
  assert.equal(boundAddress(LOG), "127.0.0.1:9001");
  assert.equal(boundAddress("[x] NOTICE: ready to handle connections\n"), null);
  // a request's URI quoted in a warning is not php-fpm's word
  assert.equal(
    boundAddress(
      `[03-Dec-2026 11:00:01] WARNING: [pool www] child 12, script '/x.php' (request: "GET /x?m=unable to bind listening socket for address '127.0.0.1:22': Address already in use") executing too slow (5.1 sec), logging\n`,
    ),
    null,
  );
  // at log_level = debug
  assert.equal(
    boundAddress(
      "[03-Dec-2026 11:00:01.123456] ERROR: pid 2210, fpm_sockets_new_listening_socket(), line 311: unable to bind listening socket for address '127.0.0.1:9001': Address already in use (98)\n",
    ),
    "127.0.0.1:9001",
  );
  assert.deepEqual(
    holdersOf(`LISTEN 0      1      127.0.0.1:9001 0.0.0.0:* users:(("python3",pid=22632,fd=3))`),
    [{ name: "python3", pid: 22632 }],
  );
  assert.deepEqual(holdersOf("LISTEN 0 1 127.0.0.1:9001 0.0.0.0:*"), []);
  assert.deepEqual(
    holdersOf(
      `u_str LISTEN 0 4096 /run/php/php8.2-fpm.sock 9 * 0 users:(("php-fpm8.2",pid=3336,fd=9),("php-fpm8.2",pid=3334,fd=7))`,
    ),
    [{ name: "php-fpm8.2", pid: 3336 }, { name: "php-fpm8.2", pid: 3334 }],
  );
  assert.equal(
    boundAddress(
      "[03-Dec-2026 10:14:02] ERROR: Another FPM instance seems to already listen on /run/php/php8.2-fpm.sock\n",
    ),
    "/run/php/php8.2-fpm.sock",
  );
});

/** php-fpm's configured listens: the pool's socket and its status port. */
const LISTENS = ["/run/php/php8.2-fpm.sock", "127.0.0.1:9001"];

Deno.test("bind conflict: a sentence naming the address, the holder's pid, name and uid", async () => {
  const tools = { ...DEBIAN_TOOLS, ss: "/usr/bin/ss" };
  const fs = fakeFs({ files: { "/var/log/php8.2-fpm.log": LOG } });
  const runner = new FakeRunner((call) => {
    if (call.cmd === "/usr/bin/ss") {
      assert.deepEqual(call.args, ["-ltnpH", "sport = :9001"]);
      return { stdout: `LISTEN 0 1 127.0.0.1:9001 0.0.0.0:* users:(("squat\x1b",pid=4321,fd=3))` };
    }
    assert.deepEqual(call.args, ["-o", "ruid=", "-q", "4321"]);
    return { stdout: "   33\n" };
  });
  assert.equal(
    await bindConflict(
      { runner, fs, unixListens: () => Promise.resolve(false) },
      tools,
      "/var/log/php8.2-fpm.log",
      [0],
      LISTENS,
    ),
    "php-fpm cannot listen on 127.0.0.1:9001: it is in use by pid 4321 (squat\\x1b, uid 33)",
  );
  // the log not root's (as for the master's own log): not read, nothing said
  const theirs = fakeFs({
    files: { "/var/log/php8.2-fpm.log": LOG },
    owners: { "/var/log/php8.2-fpm.log": 33 },
  });
  assert.equal(
    await bindConflict(
      { runner, fs: theirs, unixListens: () => Promise.resolve(false) },
      tools,
      "/var/log/php8.2-fpm.log",
      [0],
      LISTENS,
    ),
    null,
  );
  // no ss: the address alone
  assert.equal(
    await bindConflict(
      { runner, fs, unixListens: () => Promise.resolve(false) },
      DEBIAN_TOOLS,
      "/var/log/php8.2-fpm.log",
      [0],
      LISTENS,
    ),
    "php-fpm cannot listen on 127.0.0.1:9001: it is in use",
  );
  // an address php-fpm does not listen on: a line a request's query string put there, not said
  const forged = fakeFs({
    files: {
      "/var/log/php8.2-fpm.log": LOG.replaceAll("127.0.0.1:9001", "127.0.0.1:22"),
    },
  });
  assert.equal(
    await bindConflict(
      { runner, fs: forged, unixListens: () => Promise.resolve(false) },
      DEBIAN_TOOLS,
      "/var/log/php8.2-fpm.log",
      [0],
      LISTENS,
    ),
    null,
  );
  // php-fpm logs the port alone as 0.0.0.0:PORT
  const portOnly = fakeFs({
    files: { "/var/log/php8.2-fpm.log": LOG.replaceAll("127.0.0.1:9001", "0.0.0.0:9001") },
  });
  assert.equal(
    await bindConflict(
      { runner, fs: portOnly, unixListens: () => Promise.resolve(false) },
      DEBIAN_TOOLS,
      "/var/log/php8.2-fpm.log",
      [0],
      ["9001"],
    ),
    "php-fpm cannot listen on 0.0.0.0:9001: it is in use",
  );
});
