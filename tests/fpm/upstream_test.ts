import assert from "node:assert/strict";
import {
  lookAtWaits,
  mayWaitOnPeer,
  mountOf,
  parseKernelWaits,
  parseTcpPeers,
  parseUnixPeers,
  sharedWait,
  waitCounts,
} from "../../src/fpm/upstream.ts";
import { FakeRunner } from "../support/fakes.ts";

const user = (pid: number, fd = 5) => `users:(("php-fpm8.2",pid=${pid},fd=${fd}))`;

/** `ss -tnpH` as iproute2 prints it: workers 11 and 12 on MySQL, 13 on an API, a listener. */
const TCP = [
  `ESTAB      0      0          127.0.0.1:43210     127.0.0.1:3306  ${user(11)}`,
  `ESTAB      0      0          127.0.0.1:43212     127.0.0.1:3306  ${user(12)}`,
  `SYN-SENT   0      1          10.0.0.2:51000      192.0.2.7:443   ${user(13)}`,
  `ESTAB      0      0          [::1]:41000         [::1]:6379      ${user(99)}`,
  `LISTEN     0      511        127.0.0.1:9000      0.0.0.0:*       ${user(11, 0)}`,
  `ESTAB      0      0          127.0.0.1:9000      127.0.0.1:55123 ${user(11, 3)}`,
].join("\n");

Deno.test("ss -tnp: each worker's TCP peers, by pid; other processes and listeners left out", () => {
  const waits = parseTcpPeers(TCP, new Set([11, 12, 13]));
  assert.deepEqual(waits.get(11), ["127.0.0.1:3306", "127.0.0.1:55123"]);
  assert.deepEqual(waits.get(12), ["127.0.0.1:3306"]);
  assert.deepEqual(waits.get(13), ["192.0.2.7:443"]);
  assert.equal(waits.has(99), false, "not one of the pids asked");
});

/**
 * `ss -xpH`: worker 21 is the client of mysqld's socket (its end has no name: the path is the
 * server's end's, found by the peer's inode); its own FastCGI connection from nginx is on the
 * pool's socket (a name of its own: incoming, left out); /dev/log is a datagram socket.
 */
const UNIX = [
  `u_str ESTAB 0 0 * 5001 * 5002 ${user(21)}`,
  `u_str ESTAB 0 0 /run/mysqld/mysqld.sock 5002 * 5001 users:(("mysqld",pid=700,fd=40))`,
  `u_str ESTAB 0 0 /run/php/php8.2-fpm.sock 6001 * 6002 ${user(21, 3)}`,
  `u_str ESTAB 0 0 * 6002 * 6001 users:(("nginx",pid=600,fd=12))`,
  `u_dgr ESTAB 0 0 * 7001 /dev/log 7002 ${user(21, 6)}`,
  `u_str ESTAB 0 0 * 8001 * 8002 ${user(22)}`,
  `u_str LISTEN 0 4096 /run/php/php8.2-fpm.sock 9001 * 0 ${user(21, 0)}`,
].join("\n");

Deno.test("ss -xp: a worker's outgoing unix connections, named by the server's end", () => {
  const waits = parseUnixPeers(UNIX, new Set([21, 22]));
  assert.deepEqual(waits.get(21), ["/run/mysqld/mysqld.sock"]);
  assert.equal(waits.has(22), false, "a peer without a name is nobody's socket to name");
});

Deno.test("ps -o pid=,wchan=,stat=: where each waits; user code and sleeps wait on no peer", () => {
  const k = parseKernelWaits(
    "   11 wait_woken                S\n   12 -                         R\n   13 hrtimer_nanosleep S\n   14 rpc_wait_bit_killable D\n   15 io_schedule D+\nnot a line",
  );
  assert.deepEqual(k.get(11), { wchan: "wait_woken", state: "S" });
  assert.equal(mayWaitOnPeer(k.get(11)), true);
  assert.equal(mayWaitOnPeer(k.get(12)), false, "running: in user code");
  assert.equal(mayWaitOnPeer(k.get(13)), false, "sleep(): user code");
  assert.equal(mayWaitOnPeer(undefined), false, "gone");
  assert.equal(mountOf(k.get(14)), "NFS (rpc_wait_bit_killable)");
  assert.equal(mountOf(k.get(15)), "file system (io_schedule)");
  assert.equal(mountOf(k.get(11)), null);
});

Deno.test("the majority rule: more than half of the stuck workers, and at least 2", () => {
  const waits = new Map([
    [1, ["127.0.0.1:3306", "127.0.0.1:55001"]],
    [2, ["127.0.0.1:3306", "127.0.0.1:3306"]],
    [3, ["127.0.0.1:3306"]],
    [4, ["10.0.0.9:443"]],
  ]);
  assert.deepEqual(sharedWait([1, 2, 3, 4], waits), { peer: "127.0.0.1:3306", pids: [1, 2, 3] });
  assert.equal(sharedWait([1, 2, 4, 5], waits), null, "2 of 4 is not more than half");
  assert.equal(sharedWait([1], waits), null, "one worker is one slow query, not an upstream");
  const apart = new Map([[1, ["a:1"]], [2, ["b:2"]], [3, ["c:3"]]]);
  assert.equal(sharedWait([1, 2, 3], apart), null, "each on a different peer");
  assert.equal(sharedWait([1, 2, 3], new Map()), null, "waiting on nothing (user code)");
  assert.deepEqual(waitCounts([1, 2, 3, 4], waits), [
    { peer: "127.0.0.1:3306", waits: 3 },
    { peer: "10.0.0.9:443", waits: 1 },
    { peer: "127.0.0.1:55001", waits: 1 },
  ]);
});

Deno.test("one look: ss twice and ps for the pids alone, each with a deadline; a failed tool decides nothing", async () => {
  const answers = (ssCode: number) =>
    new FakeRunner((call) => {
      if (call.args[0] === "-tnpH") return { code: ssCode, stdout: TCP };
      if (call.args[0] === "-xpH") return { stdout: UNIX };
      return {
        stdout: "11 wait_woken S\n12 sk_wait_data S\n13 - R\n21 unix_stream_read_generic S",
      };
    });
  const runner = answers(0);
  const waits = await lookAtWaits(runner, { ss: "/usr/bin/ss", ps: "/usr/bin/ps" }, [
    11,
    12,
    13,
    21,
  ]);
  assert.deepEqual(waits?.get(11), ["127.0.0.1:3306", "127.0.0.1:55123"]);
  assert.deepEqual(waits?.get(21), ["/run/mysqld/mysqld.sock"]);
  assert.equal(
    waits?.has(13),
    false,
    "running in user code: its connection is not what it waits on",
  );
  assert.deepEqual(runner.lines(), [
    "/usr/bin/ss -tnpH",
    "/usr/bin/ss -xpH",
    "/usr/bin/ps -o pid=,wchan:64=,stat= -q 11,12,13,21",
  ]);
  assert.ok(runner.calls.every((c) => c.timeoutMs > 0 && c.timeoutMs <= 5000));
  assert.equal(await lookAtWaits(answers(1), { ss: "/usr/bin/ss", ps: "/usr/bin/ps" }, [11]), null);
  assert.equal(await lookAtWaits(runner, { ss: null, ps: "/usr/bin/ps" }, [11]), null, "no ss");
});

Deno.test("a peer's name is another user's text: escaped and bounded", () => {
  const path = `/tmp/evil\x1b[31m${"x".repeat(300)}`;
  const out = [
    `u_str ESTAB 0 0 * 1 * 2 ${user(5)}`,
    `u_str ESTAB 0 0 ${path} 2 * 1 users:(("x",pid=9,fd=3))`,
  ].join("\n");
  const [peer] = parseUnixPeers(out, new Set([5])).get(5) ?? [];
  assert.ok(peer !== undefined && !peer.includes("\x1b") && peer.length <= 121, peer);
});

Deno.test("workers in D state on an NFS wait are one mount's, whatever sockets they hold", async () => {
  const runner = new FakeRunner((call) =>
    call.cmd.endsWith("/ps")
      ? {
        stdout:
          "31 rpc_wait_bit_killable D\n32 rpc_wait_bit_killable D\n33 nfs_page_group_lock D\n34 - R",
      }
      : { stdout: "" }
  );
  const waits = await lookAtWaits(runner, { ss: "/usr/bin/ss", ps: "/usr/bin/ps" }, [
    31,
    32,
    33,
    34,
  ]);
  assert.ok(waits !== null);
  assert.equal(sharedWait([31, 32, 33, 34], waits), null, "2 of 4 is no majority");
  assert.deepEqual(sharedWait([31, 32, 33], waits), {
    peer: "NFS (rpc_wait_bit_killable)",
    pids: [31, 32],
  });
  assert.equal(waits.has(34), false, "running: in user code");
});
