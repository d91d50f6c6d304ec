import assert from "node:assert/strict";
import { locateMaster, type MasterIdentity } from "../../src/act/master.ts";
import { certainty } from "../../src/act/process_table.ts";
import { parseFacts, parseTitles } from "../../src/act/processes.ts";
import { DEBIAN_TOOLS } from "../support/fakes.ts";
import { FpmHost, masterTitle, psLine, titleLine } from "../support/fpm_host.ts";

const ID: MasterIdentity = {
  service: "php8.2-fpm",
  processName: "php-fpm8.2",
  fpmConfig: "/etc/php/8.2/fpm/php-fpm.conf",
};

/** The master view and certainty of `host`'s table, the master last seen being `known`. */
async function judge(host: FpmHost, known: number | null, kind: "crash" | "hang") {
  const view = await locateMaster(
    { runner: host.runner(), tools: DEBIAN_TOOLS, init: "sysv" },
    ID,
    known,
  );
  return { view, certain: certainty(view, ID, known, kind) };
}

Deno.test("ps's lines: facts and titles, a title with spaces and digits cut at its width, garbage left out", () => {
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  const long = host.add({ name: "php-fpm8.2", title: `x ${"9 ".repeat(500)}`, ruid: 33, euid: 33 });
  const rows = parseFacts(
    [...host.procs.map((p) => psLine(p)), "  PID TTY", "garbage 1 2"].join("\n"),
  );
  assert.equal(rows.length, 4);
  assert.deepEqual(rows[0], {
    pid: master,
    ppid: 1,
    pgid: master,
    ruid: 0,
    euid: 0,
    state: "S",
    cpuSeconds: 1,
    rssKb: 10_000,
    ageSeconds: 100,
    title: "",
  });
  const titles = parseTitles(host.procs.map(titleLine).join("\n"));
  assert.equal(titles.get(master), masterTitle(ID.fpmConfig!));
  assert.equal(titles.get(long.pid)!.length <= 255, true);
  assert.match(titles.get(long.pid)!, /^x 9 9/);
});

Deno.test("the titles read are root's group leaders', each by pid: another user's process cannot make the read wait", async () => {
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  host.add({ name: "php-fpm8.2", title: masterTitle(ID.fpmConfig!), ruid: 33, euid: 33 });
  const view = await locateMaster(
    { runner: host.runner(), tools: DEBIAN_TOOLS, init: "sysv" },
    ID,
    null,
  );
  assert.equal(view.live, master);
  assert.deepEqual(host.titleReads, [[master]], "only the root leader's title");
  // a title read that does not answer leaves the master unknown, never another one chosen
  const stalled = host.runner((call) =>
    call.args[0] === "-q" ? { timedOut: true, code: 143 } : undefined
  );
  const blind = await locateMaster(
    { runner: stalled, tools: DEBIAN_TOOLS, init: "sysv" },
    ID,
    master,
  );
  assert.equal(blind.live, null);
  assert.equal(certainty(blind, ID, master, "crash"), null, "and no crash is certain");
});

Deno.test("certain crash: the master last seen gone or a zombie, and no other master of its configuration", async () => {
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  assert.equal((await judge(host, master, "crash")).certain, null, "alive: confirmed as usual");
  host.procs = host.procs.filter((p) => p.pid !== master);
  assert.deepEqual((await judge(host, master, "crash")).certain, {
    kind: "crash",
    why:
      `master ${master} is gone and no other php-fpm8.2 master of /etc/php/8.2/fpm/php-fpm.conf runs`,
  });
  host.add({ pid: master, name: "php-fpm8.2", title: "[php-fpm8.2] <defunct>", stat: "Z" });
  assert.match((await judge(host, master, "crash")).certain!.why, /is a zombie/);
});

Deno.test("certain crash: another user's look-alike, another instance or another version change nothing", async () => {
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  host.procs = host.procs.filter((p) => p.pid !== master);
  // www-data: its own group, the init system's child, the master's title, the name
  host.add({ name: "php-fpm8.2", title: masterTitle(ID.fpmConfig!), ruid: 33, euid: 33 });
  // a setuid program run by www-data under the name
  host.add({ name: "php-fpm8.2", title: masterTitle(ID.fpmConfig!), ruid: 33, euid: 0 });
  // a second instance of the binary, with a configuration of its own
  host.add({ name: "php-fpm8.2", title: masterTitle("/etc/php/8.2/fpm-b/php-fpm.conf") });
  host.up("php7.4-fpm");
  assert.ok((await judge(host, master, "crash")).certain);
});

Deno.test("no certain crash while a master of its own configuration runs, or may be about to", async () => {
  const host = new FpmHost();
  const master = host.up("php8.2-fpm");
  host.procs = host.procs.filter((p) => p.pid !== master);
  // started again by someone else (a deploy, systemd's Restart=): not ours to restart at once
  const again = host.up("php8.2-fpm");
  const { view, certain } = await judge(host, master, "crash");
  assert.equal(certain, null);
  assert.equal(view.live, again);
  // a master re-executing itself (SIGUSR2) shows its command line for a moment
  host.procs = host.procs.filter((p) => p.pid !== again);
  host.add({ name: "php-fpm8.2", title: "/usr/sbin/php-fpm8.2 --daemonize --fpm-config x" });
  assert.equal((await judge(host, master, "crash")).certain, null);
});

Deno.test("certain hang: every process of the live master's group stopped", async () => {
  const host = new FpmHost();
  const master = host.up("php8.2-fpm", "T");
  assert.deepEqual((await judge(host, master, "hang")).certain, {
    kind: "hang",
    why: `all 3 php-fpm8.2 processes of master ${master} are stopped`,
  });
  host.procs[2]!.stat = "S";
  assert.equal((await judge(host, master, "hang")).certain, null, "one still runs");
});

Deno.test("nothing is certain without a master seen before, or without a process table", async () => {
  const host = new FpmHost();
  assert.equal((await judge(host, null, "crash")).certain, null);
  const view = await locateMaster(
    {
      runner: new FpmHost().runner(() => ({ code: 2 })),
      tools: DEBIAN_TOOLS,
      init: "sysv",
    },
    ID,
    1000,
  );
  assert.equal(view.rows, null);
  assert.equal(certainty(view, ID, 1000, "crash"), null);
});

Deno.test("the master: the one of its configuration; of several (configuration unknown), the one last seen; the pid file never chooses", async () => {
  const host = new FpmHost();
  const a = host.up("php8.2-fpm");
  const b = host.add({ name: "php-fpm8.2", title: masterTitle("/etc/php/8.2/fpm-b/php-fpm.conf") });
  const look = (id: MasterIdentity, known: number | null) =>
    locateMaster({ runner: host.runner(), tools: DEBIAN_TOOLS, init: "sysv" }, id, known);
  assert.equal((await look(ID, null)).live, a);
  const unknown = { ...ID, fpmConfig: null };
  assert.deepEqual([(await look(unknown, null)).live, (await look(unknown, null)).candidates], [
    null,
    2,
  ]);
  assert.equal((await look(unknown, b.pid)).live, b.pid);
});
