import assert from "node:assert/strict";
import { socketHolders } from "../../src/fpm/socket_holder.ts";
import { fakeFs, FakeRunner } from "../support/fakes.ts";

const SOCK = "/run/php/php8.2-fpm.sock";
/** `ss -xlpeH src SOCK` on Debian 12 after www-data moved php-fpm's socket aside and bound its own. */
const SS = [
  `u_str LISTEN 0 4096 ${SOCK} 360184 * 0 users:(("php-fpm8.2",pid=3336,fd=9),("php-fpm8.2",pid=3334,fd=7)) <-> ino:2146455 dev:0/25 peers:`,
  `u_str LISTEN 0 4096 ${SOCK}.b 360190 * 0 users:(("php-fpm8.2",pid=3500,fd=9)) <-> ino:2146460 dev:0/25 peers:`,
  `u_str LISTEN 0 8 ${SOCK} 360201 * 0 users:(("python3",pid=4242,fd=3)) <-> ino:2146468 dev:0/25 peers:`,
  "",
].join("\n");

/** ss answering `stdout`: every listener when the inode is known, else those named `SOCK`. */
function ss(stdout: string, code = 0, byName = false) {
  return new FakeRunner((call) => {
    assert.deepEqual(call.args, byName ? ["-xlpeH", "src", SOCK] : ["-xlpeH"]);
    return { code, stdout };
  });
}

Deno.test("socket holders: the listener whose file is at the path, told by its inode", async () => {
  const at = (ino: number) => fakeFs({ sockets: { [SOCK]: ino } });
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, ss(SS), at(2146468)), [
    { name: "python3", pid: 4242 },
  ]);
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, ss(SS), at(2146455)), [
    { name: "php-fpm8.2", pid: 3336 },
    { name: "php-fpm8.2", pid: 3334 },
  ]);
  // a file at the path no listener has (php-fpm's socket left behind by a crash): no one
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, ss(SS), at(7)), []);
  // no file at the path: no one, whatever the kernel remembers of the name
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, ss(SS), fakeFs({})), []);
  // bound by another spelling of the path (or a relative name): found by its inode all the same
  const spelled =
    `u_str LISTEN 0 8 /run/php//php8.2-fpm.sock 7 * 0 users:(("python3",pid=77,fd=3)) <-> ino:88 dev:0/25 peers:`;
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, ss(`${SS}${spelled}\n`), at(88)), [
    { name: "python3", pid: 77 },
  ]);
  // the same inode on another device is another file
  const elsewhere = fakeFs({ sockets: { [SOCK]: 2146468 }, devices: { [SOCK]: 26 } });
  assert.deepEqual(await socketHolders("/usr/bin/ss", SOCK, ss(SS), elsewhere), []);
  const here = fakeFs({ sockets: { [SOCK]: 2146468 }, devices: { [SOCK]: 25 } });
  assert.equal((await socketHolders("/usr/bin/ss", SOCK, ss(SS), here))?.[0]?.pid, 4242);
  // a listing cut short is not read
  const cut = new FakeRunner(() => ({ code: 0, stdout: SS, truncated: true }));
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, cut, at(2146468)), null);
});

Deno.test("socket holders: null when it cannot be told", async () => {
  const noIno = fakeFs({ files: { [SOCK]: "" } });
  // two listeners of the name, and no inode to choose by
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, ss(SS, 0, true), noIno), null);
  // one: it is the one
  assert.deepEqual(
    await socketHolders("/usr/bin/ss", SOCK, ss(SS.split("\n")[2]!, 0, true), noIno),
    [{ name: "python3", pid: 4242 }],
  );
  // a path of another socket only begins with it: not its listener
  assert.deepEqual(
    await socketHolders("/usr/bin/ss", SOCK, ss(SS.split("\n")[1]!, 0, true), noIno),
    [],
  );
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, ss("", 1, true), noIno), null);
  const hangs = new FakeRunner(() => ({ code: 0, timedOut: true }));
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, hangs, noIno), null);
  const fails = new FakeRunner(() => new Error("spawn failed"));
  assert.equal(await socketHolders("/usr/bin/ss", SOCK, fails, noIno), null);
});
