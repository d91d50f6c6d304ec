import assert from "node:assert/strict";
import { tryLock } from "../src/lock.ts";
import { formatLine, jsonLine, openAppendNoFollow } from "../src/log.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "php-relaunch-test-" });
}

Deno.test("lock: exclusive while held, free again when released, file kept", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/run.lock`;
    const first = await tryLock(path);
    assert.ok(first);
    assert.equal(await tryLock(path), null);
    first[Symbol.dispose]();
    const again = await tryLock(path);
    assert.ok(again);
    again[Symbol.dispose]();
    assert.ok((await Deno.lstat(path)).isFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: held by flock(1) in another process means busy", async () => {
  const dir = await tempDir();
  const path = `${dir}/run.lock`;
  const holder = new Deno.Command("flock", {
    args: ["-n", path, "sleep", "30"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    let busy = false;
    for (let i = 0; i < 50 && !busy; i++) {
      const lock = await tryLock(path);
      if (lock === null) busy = true;
      else {
        lock[Symbol.dispose]();
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(busy, "flock(1)'s lock was seen");
  } finally {
    holder.kill("SIGKILL");
    await holder.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock and log refuse a symlink planted at their path", async () => {
  const dir = await tempDir();
  try {
    const target = `${dir}/victim`;
    await Deno.writeTextFile(target, "precious\n");
    await Deno.symlink(target, `${dir}/link`);
    await assert.rejects(() => tryLock(`${dir}/link`), /symbolic link/);
    await assert.rejects(() => openAppendNoFollow(`${dir}/link`), /symbolic link/);
    await Deno.mkdir(`${dir}/adir`);
    await assert.rejects(() => openAppendNoFollow(`${dir}/adir`), /not a regular file/);
    assert.equal(await Deno.readTextFile(target), "precious\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("log file: appended to, created 0640", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/php-relaunch.log`;
    for (const line of ["one\n", "two\n"]) {
      const f = await openAppendNoFollow(path);
      await f.write(new TextEncoder().encode(line));
      f.close();
    }
    assert.equal(await Deno.readTextFile(path), "one\ntwo\n");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o640);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("log line: ISO-8601 UTC to the second, host, message", () => {
  assert.equal(
    formatLine(Date.UTC(2026, 10, 25, 18, 40, 1, 345), "web1", "502 PHP restarted."),
    "2026-11-25T18:40:01Z web1 502 PHP restarted.",
  );
});

Deno.test("log: JSON lines carry the same event as the text line, with its fields", () => {
  const record = {
    category: ["php-relaunch"],
    level: "info" as const,
    timestamp: Date.UTC(2026, 10, 25, 18, 40, 1, 345),
    message: ["", "502 PHP restarted.", ""],
    rawMessage: "{message}",
    properties: { message: "502 PHP restarted.", target: "php8.2-fpm" },
  };
  const obj = JSON.parse(jsonLine(record, "web1"));
  assert.deepEqual(obj, {
    time: "2026-11-25T18:40:01.345Z",
    host: "web1",
    level: "info",
    message: "502 PHP restarted.",
    target: "php8.2-fpm",
  });
});
