import assert from "node:assert/strict";
import { lockHolder, tryLock } from "../../src/shared/lock.ts";
import { formatLine, jsonLine, openAppendNoFollow } from "../../src/shared/log.ts";

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

Deno.test("lock: its holder says who it is; a run that finds it held reads that", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/run.lock`;
    const held = await tryLock(path);
    assert.ok(held);
    await held.say("watch 123456");
    await held.say("cron 7");
    assert.equal(await tryLock.holder!(path), "cron 7", "rewritten whole, nothing left over");
    assert.equal(await lockHolder(`${dir}/none.lock`), null);
    held[Symbol.dispose]();
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

Deno.test("lock: a run killed with SIGKILL while holding it leaves it free for the next", async () => {
  const dir = await tempDir();
  const path = `${dir}/run.lock`;
  const lockModule = new URL("../../src/shared/lock.ts", import.meta.url).href;
  // another php-relaunch: takes the lock through our own code, says so, and waits to be killed
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--ext=ts",
      `const { tryLock } = await import(${JSON.stringify(lockModule)});
       const held = await tryLock(${JSON.stringify(path)});
       console.log(held ? "held" : "busy");
       await new Promise((r) => setTimeout(r, 60_000));`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = holder.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    assert.equal(new TextDecoder().decode(value).trim(), "held");
    assert.equal(await tryLock(path), null, "busy while the other run lives");
    holder.kill("SIGKILL");
    await holder.status;
    const next = await tryLock(path);
    assert.ok(next, "free once the holder is gone, with the file still there");
    next[Symbol.dispose]();
  } finally {
    try {
      holder.kill("SIGKILL");
    } catch { /* already dead */ }
    await holder.status;
    await holder.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: its folder is made for us alone; one that others can write is refused", async () => {
  const dir = await tempDir();
  try {
    const held = await tryLock(`${dir}/locks/run.lock`);
    assert.ok(held);
    held[Symbol.dispose]();
    assert.equal((await Deno.lstat(`${dir}/locks`)).mode! & 0o7777, 0o700);
    await Deno.chmod(`${dir}/locks`, 0o1777);
    await assert.rejects(
      () => tryLock(`${dir}/locks/run.lock`),
      /Refusing lock folder ".*\/locks": its mode 1777 lets others write to it/,
    );
    await Deno.chmod(`${dir}/locks`, 0o700);
    await Deno.chown(`${dir}/locks/run.lock`, 65534, 65534);
    await assert.rejects(
      () => tryLock(`${dir}/locks/run.lock`),
      /Refusing lock file ".*run\.lock": it is owned by uid 65534, not root/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
