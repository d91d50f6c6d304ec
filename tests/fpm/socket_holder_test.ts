import assert from "node:assert/strict";
import { socketHolders } from "../../src/fpm/socket_holder.ts";
import type { Fs } from "../../src/shared/deps.ts";
import { fakeFs, FakeRunner } from "../support/fakes.ts";

const SOCK = "/run/php/php8.2-fpm.sock";
/**
 * `ss -xlpeH src SOCK` on Debian 12 after www-data moved php-fpm's socket aside and bound its own:
 * both are listeners of the name; a socket whose name only begins with it is listed too.
 */
const SS = [
  `u_str LISTEN 0 4096 ${SOCK} 360184 * 0 users:(("php-fpm8.2",pid=3336,fd=9),("php-fpm8.2",pid=3334,fd=7)) <-> ino:2146455 dev:0/25 peers:`,
  `u_str LISTEN 0 4096 ${SOCK}.b 360190 * 0 users:(("php-fpm8.2",pid=3500,fd=9)) <-> ino:2146460 dev:0/25 peers:`,
  `u_str LISTEN 0 8 ${SOCK} 360201 * 0 users:(("python3",pid=4242,fd=3)) <-> ino:2146468 dev:0/25 peers:`,
  "",
].join("\n");

/** What socketHolders asks: ss answering `stdout`, `fs`, and whether a connection is taken. */
function deps(fs: Fs, stdout = SS, listens: boolean | null = false, code = 0) {
  const runner = new FakeRunner((call) => {
    assert.deepEqual(call.args, ["-xlpeH", "src", SOCK]);
    return { code, stdout };
  });
  const tried: string[] = [];
  const unixListens = (path: string) => {
    tried.push(path);
    return Promise.resolve(listens);
  };
  return { runner, fs, unixListens, tried };
}

const at = (ino: number) => fakeFs({ sockets: { [SOCK]: ino } });

Deno.test("socket holders: the listener of the name whose file is at the path, by its inode", async () => {
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, deps(at(2146468))), [
    { name: "python3", pid: 4242 },
  ]);
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, deps(at(2146455))), [
    { name: "php-fpm8.2", pid: 3336 },
    { name: "php-fpm8.2", pid: 3334 },
  ]);
  // a socket whose name only begins with the path is not its listener, even with that inode
  const prefix = deps(at(2146460));
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, prefix), []);
  assert.deepEqual(prefix.tried, [SOCK], "the connection tells: nobody answers");
  // no file at the path: no one, whatever the kernel remembers of the name
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, deps(fakeFs({}))), []);
  // the same inode on another device is another file
  const elsewhere = fakeFs({ sockets: { [SOCK]: 2146468 }, devices: { [SOCK]: 26 } });
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, deps(elsewhere)), []);
  const here = fakeFs({ sockets: { [SOCK]: 2146468 }, devices: { [SOCK]: 25 } });
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, deps(here)), [
    { name: "python3", pid: 4242 },
  ]);
});

Deno.test("socket holders: a file at the path no listener of its name is: left behind, or bound by another name", async () => {
  // php-fpm's socket left behind by a crash: nothing takes a connection
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, deps(at(7), SS, false)), []);
  // bound as /run/php//php8.2-fpm.sock or by a relative name: something answers, ss names it not
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, deps(at(7), SS, true)), "unnamed");
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, deps(at(7), SS, null)), null);
});

Deno.test("socket holders: null when ss cannot say", async () => {
  const noIno = fakeFs({ files: { [SOCK]: "" } });
  // two listeners of the name, and no inode to choose by
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, deps(noIno)), null);
  // one: it is the one
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, deps(noIno, SS.split("\n")[2]!)), [
    { name: "python3", pid: 4242 },
  ]);
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, deps(at(7), "", false, 1)), null);
  const quiet = { unixListens: () => Promise.resolve(true), fs: at(2146468) };
  const hangs = new FakeRunner(() => ({ code: 0, timedOut: true }));
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, { ...quiet, runner: hangs }), null);
  const fails = new FakeRunner(() => new Error("spawn failed"));
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, { ...quiet, runner: fails }), null);
  // a listing cut short is not read
  const cut = new FakeRunner(() => ({ code: 0, stdout: SS, truncated: true }));
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, { ...quiet, runner: cut }), null);
});
