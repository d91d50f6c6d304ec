/**
 * Following php-fpm's error log from where the last step stopped: on real files (appends, a line
 * still being written, logrotate's rename and copytruncate, a flood), and the journal's cursor
 * with a fake journalctl.
 */
import assert from "node:assert/strict";
import { type FileCursor, followFile, followJournal } from "../../src/fpm/log_follow.ts";
import { realDeps } from "../../src/real.ts";
import { fakeFs, FakeRunner } from "../support/fakes.ts";

const fs = realDeps().fs;

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-follow-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const append = (path: string, text: string) => Deno.writeTextFile(path, text, { append: true });

Deno.test("follow: starts at the log's end, then reads each new whole line once", async () => {
  await withDir(async (dir) => {
    const log = `${dir}/fpm.log`;
    await Deno.writeTextFile(log, "old 1\nold 2\n");
    let r = await followFile(fs, log, null, [0]);
    assert.deepEqual(r.lines, [], "history is not news");
    assert.equal(r.cursor?.offset, 12);
    await append(log, "new 1\nnew 2\nhalf a li");
    r = await followFile(fs, log, r.cursor, [0]);
    assert.deepEqual(r.lines, ["new 1", "new 2"], "a line still being written waits");
    r = await followFile(fs, log, r.cursor, [0]);
    assert.deepEqual(r.lines, [], "nothing read twice");
    await append(log, "ne\n");
    r = await followFile(fs, log, r.cursor, [0]);
    assert.deepEqual(r.lines, ["half a line"]);
    assert.equal(r.note, null);
  });
});

Deno.test("follow: a log that did not grow is not opened", async () => {
  await withDir(async (dir) => {
    const log = `${dir}/fpm.log`;
    await Deno.writeTextFile(log, "old\n");
    let opened = 0;
    const counting = {
      info: fs.info,
      readUntrustedFrom: (...a: Parameters<typeof fs.readUntrustedFrom>) => {
        opened++;
        return fs.readUntrustedFrom(...a);
      },
    };
    let r = await followFile(counting, log, null, [0]);
    for (let i = 0; i < 3; i++) r = await followFile(counting, log, r.cursor, [0]);
    assert.equal(opened, 0, "a quiet log is only looked at");
    await append(log, "new\n");
    r = await followFile(counting, log, r.cursor, [0]);
    assert.deepEqual(r.lines, ["new"]);
    assert.equal(opened, 1);
    // rotated: another file of the same size in its place, read from its start
    await Deno.rename(log, `${log}.1`);
    await Deno.writeTextFile(log, "abcdefg\n");
    r = await followFile(counting, log, r.cursor, [0]);
    assert.deepEqual(r.lines, ["abcdefg"]);
  });
});

Deno.test("follow: rotation by rename reads the old file's rest, then the new one", async () => {
  await withDir(async (dir) => {
    const log = `${dir}/fpm.log`;
    await Deno.writeTextFile(log, "a\n");
    let r = await followFile(fs, log, null, [0]);
    await append(log, "b\n");
    // logrotate: the old file moves to .1, php-fpm (USR1) opens a new one
    await Deno.rename(log, `${log}.1`);
    await Deno.writeTextFile(log, "c\nd\n");
    r = await followFile(fs, log, r.cursor, [0]);
    assert.deepEqual(r.lines, ["b", "c", "d"]);
    await append(log, "e\n");
    r = await followFile(fs, log, r.cursor, [0]);
    assert.deepEqual(r.lines, ["e"]);
  });
});

Deno.test("follow: a truncated log (copytruncate) is read from its start", async () => {
  await withDir(async (dir) => {
    const log = `${dir}/fpm.log`;
    await Deno.writeTextFile(log, "a long first line\n");
    let r = await followFile(fs, log, null, [0]);
    await Deno.truncate(log, 0);
    await append(log, "x\n");
    r = await followFile(fs, log, r.cursor, [0]);
    assert.deepEqual(r.lines, ["x"]);
  });
});

Deno.test("follow: a flood is read from its newest lines, and said", async () => {
  await withDir(async (dir) => {
    const log = `${dir}/fpm.log`;
    await Deno.writeTextFile(log, "");
    let r = await followFile(fs, log, null, [0], 16);
    await append(log, "line 1\nline 2\nline 3\nline 4\n");
    r = await followFile(fs, log, r.cursor, [0], 16);
    assert.deepEqual(r.lines, ["line 3", "line 4"], "the newest whole lines within 16 bytes");
    assert.match(r.note ?? "", /^14 bytes of .* skipped/);
    assert.equal(r.cursor?.offset, 28);
  });
});

Deno.test("follow: another owner's log, or a link, is not read; the cursor stays", async () => {
  await withDir(async (dir) => {
    const log = `${dir}/fpm.log`;
    await Deno.writeTextFile(log, "a\n");
    const first = await followFile(fs, log, null, [0]);
    await append(log, "b\n");
    await Deno.chown(log, 33, 33);
    const r = await followFile(fs, log, first.cursor, [0]);
    assert.deepEqual(r.lines, []);
    assert.deepEqual(r.cursor, first.cursor);
    assert.match(r.note ?? "", /owned by uid 33/);
    await Deno.remove(log);
    await Deno.symlink("/etc/shadow", log);
    const link = await followFile(fs, log, first.cursor, [0]);
    assert.deepEqual(link.lines, []);
    assert.match(link.note ?? "", /symbolic link/);
  });
});

Deno.test("follow: the fake log's offsets are the real one's", async () => {
  const cursor: FileCursor = { path: "/var/log/fpm.log", ino: 1, offset: 2 };
  const r = await followFile(
    fakeFs({ files: { "/var/log/fpm.log": "a\nb\nc" } }),
    "/var/log/fpm.log",
    cursor,
    [0],
  );
  assert.deepEqual(r.lines, ["b"]);
  assert.deepEqual(r.cursor, { path: "/var/log/fpm.log", ino: 1, offset: 4 });
});

Deno.test("follow: the journal from now, then after its cursor, by the processes' name", async () => {
  const runner = new FakeRunner((call) =>
    call.args.some((a) => a.startsWith("--since")) ? { stdout: "" } : {
      stdout: [
        "1764756001.250000 web1 php-fpm[812]: [WARNING] [pool www] child 9 exited on signal 11 (SIGSEGV) after 1 seconds from start",
        "-- cursor: s=abc;i=2",
        "",
      ].join("\n"),
    }
  );
  let r = await followJournal(runner, "/usr/bin/journalctl", "php-fpm8.2", null, 1_764_756_000_500);
  assert.deepEqual(r.lines, []);
  assert.deepEqual(r.cursor, { cursor: null, sinceSec: 1_764_756_000 });
  r = await followJournal(runner, "/usr/bin/journalctl", "php-fpm8.2", {
    cursor: "s=old",
    sinceSec: 0,
  }, 1_764_756_002_000);
  assert.equal(r.lines.length, 1);
  assert.equal(r.cursor.cursor, "s=abc;i=2");
  assert.deepEqual(runner.lines(), [
    "/usr/bin/journalctl -q --no-pager -o short-unix --show-cursor --since=@1764756000 _COMM=php-fpm8.2",
    "/usr/bin/journalctl -q --no-pager -o short-unix --show-cursor --after-cursor=s=old _COMM=php-fpm8.2",
  ]);
  assert.ok(runner.calls.every((c) => c.timeoutMs > 0 && c.timeoutMs <= 5000), "a deadline");
  const failing = new FakeRunner(() => ({ code: 1, stderr: "No journal files were found." }));
  const kept = await followJournal(failing, "/usr/bin/journalctl", "php-fpm8.2", {
    cursor: "s=x",
    sinceSec: 5,
  }, 0);
  assert.deepEqual(kept.cursor, { cursor: "s=x", sinceSec: 5 });
  assert.match(kept.note ?? "", /No journal files/);
});
