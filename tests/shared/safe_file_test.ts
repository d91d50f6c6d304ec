/**
 * Reading files another user can write, on the real filesystem: a named pipe, a link, a hard
 * link or another owner's file is refused without blocking, and a pipe swapped in and out under
 * a read never holds it.
 */
import assert from "node:assert/strict";
import { readRegularText, TRUST_FOLDER_MS } from "../../src/shared/safe_file.ts";
import { ROOT } from "../support/cli.ts";
import { asUser } from "../support/hostile.ts";

/** Another user's uid and gid (nobody, nogroup on Debian). */
const NOBODY = 65534;

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-safe-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function mkfifo(path: string): Promise<void> {
  const r = await new Deno.Command("/usr/bin/mkfifo", { args: [path] }).output();
  assert.equal(r.code, 0, "mkfifo");
}

Deno.test("untrusted read: a pipe, a link, a folder are refused at once; a file is read", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/pid`, "1234\n");
    await mkfifo(`${dir}/fifo`);
    await Deno.symlink(`${dir}/pid`, `${dir}/link`);
    await Deno.mkdir(`${dir}/folder`);
    assert.equal(await readRegularText(`${dir}/pid`, { maxBytes: 32 }), "1234\n");
    const started = Date.now();
    await assert.rejects(readRegularText(`${dir}/fifo`, { maxBytes: 32 }), /not a regular file/);
    await assert.rejects(readRegularText(`${dir}/link`, { maxBytes: 32 }), /a symbolic link/);
    await assert.rejects(readRegularText(`${dir}/folder`, { maxBytes: 32 }), /not a regular/);
    await assert.rejects(readRegularText(`${dir}/none`, { maxBytes: 32 }), Deno.errors.NotFound);
    assert.ok(Date.now() - started < 1000, "none of them waited");
    // root's own files may be reached through a link (Debian's alternatives, /etc's)
    assert.equal(await readRegularText(`${dir}/link`, { maxBytes: 32, follow: true }), "1234\n");
    await assert.rejects(
      readRegularText(`${dir}/fifo`, { maxBytes: 32, follow: true }),
      /not a regular file/,
    );
  });
});

Deno.test("untrusted read: a folder on the way that another user turned into a link is refused; root's own link is followed", async () => {
  await withDir(async (dir) => {
    await Deno.chmod(dir, 0o755);
    // root's folder with a root-only log, and a site folder its user owns
    await Deno.mkdir(`${dir}/secret`, { mode: 0o700 });
    await Deno.writeTextFile(`${dir}/secret/slow.log`, "root only\n", { mode: 0o600 });
    await Deno.mkdir(`${dir}/site`);
    await Deno.chown(`${dir}/site`, NOBODY, NOBODY);
    assert.equal(await asUser(["ln", "-s", `${dir}/secret`, `${dir}/site/rv`]), 0);
    // a pid file's read: the link among the folders is refused
    await assert.rejects(
      readRegularText(`${dir}/site/rv/slow.log`, { maxBytes: 64 }),
      /"[^"]*\/site\/rv" is a symbolic link another user could have made/,
    );
    // a log's read (shown to people): the site's folder itself is refused, links or not, since
    // its user can swap a folder and a link back and forth faster than any check
    const rules = { maxBytes: 1024, tail: true, owners: [0, 33] };
    await Deno.mkdir(`${dir}/site/log`);
    await Deno.writeTextFile(`${dir}/site/log/slow.log`, "the site's\n");
    await assert.rejects(
      readRegularText(`${dir}/site/log/slow.log`, rules),
      /the folder "[^"]*\/site" is one another user can change \(uid 65534, mode 0755\)/,
    );
    // a link root made in a folder only root may write (as /var/run -> /run)
    await Deno.symlink(`${dir}/secret`, `${dir}/rootlink`);
    assert.equal(await readRegularText(`${dir}/rootlink/slow.log`, rules), "root only\n");
  });
});

Deno.test("untrusted read: root's own folders are trusted for a while, another user's folder is looked at every time", async () => {
  // a chain of root's folders from / (not /tmp, which everybody may write)
  const dir = await Deno.makeTempDir({ dir: "/run", prefix: "php-relaunch-safe-" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.mkdir(`${dir}/secret`, { mode: 0o700 });
    await Deno.writeTextFile(`${dir}/secret/php.pid`, "1\n", { mode: 0o600 });
    await Deno.mkdir(`${dir}/site`);
    await Deno.chown(`${dir}/site`, NOBODY, NOBODY);
    assert.equal(await asUser(["mkdir", `${dir}/site/php`]), 0);
    assert.equal(await asUser(["sh", "-c", `echo 4242 > ${dir}/site/php/php.pid`]), 0);
    // read twice: the first read may trust what it saw, the second must look again
    for (let i = 0; i < 2; i++) {
      assert.equal(await readRegularText(`${dir}/site/php/php.pid`, { maxBytes: 32 }), "4242\n");
    }
    assert.equal(await readRegularText(`${dir}/secret/php.pid`, { maxBytes: 32 }), "1\n");
    // the pool's user swaps its folder for a link to root's: refused at once, not trusted
    assert.equal(await asUser(["mv", `${dir}/site/php`, `${dir}/site/old`]), 0);
    assert.equal(await asUser(["ln", "-s", `${dir}/secret`, `${dir}/site/php`]), 0);
    await assert.rejects(
      readRegularText(`${dir}/site/php/php.pid`, { maxBytes: 32 }),
      /"[^"]*\/site\/php" is a symbolic link another user could have made/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("untrusted read: a trusted folder root hands to another user is looked at again: at once for logs, within seconds for the rest", async () => {
  const dir = await Deno.makeTempDir({ dir: "/run", prefix: "php-relaunch-safe-" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.mkdir(`${dir}/secret`, { mode: 0o700 });
    await Deno.writeTextFile(`${dir}/secret/log`, "root only\n", { mode: 0o600 });
    await Deno.mkdir(`${dir}/f/sub`, { recursive: true, mode: 0o755 });
    await Deno.chmod(`${dir}/f`, 0o755);
    await Deno.writeTextFile(`${dir}/f/sub/log`, "benign\n", { mode: 0o644 });
    const log = { maxBytes: 64, owners: [0] };
    assert.equal(await readRegularText(`${dir}/f/sub/log`, log), "benign\n");
    assert.equal(await readRegularText(`${dir}/f/sub/log`, { maxBytes: 64 }), "benign\n");
    // root gives the folder away; its new owner swaps what it holds for a link to root's secret
    await Deno.chown(`${dir}/f`, NOBODY, NOBODY);
    assert.equal(await asUser(["mv", `${dir}/f/sub`, `${dir}/f/old`]), 0);
    assert.equal(await asUser(["ln", "-s", `${dir}/secret`, `${dir}/f/sub`]), 0);
    await assert.rejects(
      readRegularText(`${dir}/f/sub/log`, log),
      /is one another user can change/,
    );
    await new Promise((r) => setTimeout(r, TRUST_FOLDER_MS + 200));
    await assert.rejects(
      readRegularText(`${dir}/f/sub/log`, { maxBytes: 64 }),
      /is a symbolic link another user could have made/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("untrusted read: owners, hard links and size are checked; a tail starts at a line", async () => {
  await withDir(async (dir) => {
    const secret = `${dir}/root-only`;
    await Deno.writeTextFile(secret, "root's secret\n", { mode: 0o600 });
    // a log folder of root's, with a hard link to a root-only file and another user's file in it
    await Deno.mkdir(`${dir}/site`);
    await Deno.link(secret, `${dir}/site/hard.log`);
    await Deno.writeTextFile(`${dir}/site/theirs.log`, "theirs\n");
    await Deno.chown(`${dir}/site/theirs.log`, NOBODY, NOBODY);
    const rules = { maxBytes: 1024, tail: true, owners: [0, 33] };
    await assert.rejects(
      readRegularText(`${dir}/site/hard.log`, rules),
      /other names \(hard links\)/,
    );
    await assert.rejects(
      readRegularText(`${dir}/site/theirs.log`, rules),
      /owned by uid 65534, not uid 0 or uid 33/,
    );
    assert.equal(
      await readRegularText(`${dir}/site/theirs.log`, { ...rules, owners: [0, NOBODY] }),
      "theirs\n",
    );
    await Deno.writeTextFile(`${dir}/big`, "first line\n".repeat(100) + "last line\n");
    await assert.rejects(readRegularText(`${dir}/big`, { maxBytes: 64 }), /more than the 64/);
    assert.equal(await readRegularText(`${dir}/big`, { maxBytes: 15, tail: true }), "last line\n");
  });
});

Deno.test("untrusted read: a pipe or a link swapped in and out under reads neither holds one nor is read", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/php8.2-fpm.pid`;
    await mkfifo(`${dir}/fifo`);
    // a root-only file a link could point the read at
    await Deno.writeTextFile(`${dir}/secret`, "9999\n", { mode: 0o600 });
    // as www-data would in its /run/php: the pid file replaced, back and forth, as fast as it
    // can, by a process of its own (bounded: it stops after 30 s if not ended before)
    const swapper = new Deno.Command("/usr/bin/python3", {
      args: [
        "-c",
        `import os, time
end = time.time() + 30
d = "${dir}"
while time.time() < end:
    os.mkfifo(d + "/t")
    os.rename(d + "/t", "${path}")
    os.symlink(d + "/fifo", d + "/t")
    os.rename(d + "/t", "${path}")
    os.symlink(d + "/secret", d + "/t")
    os.rename(d + "/t", "${path}")
    with open(d + "/t", "w") as f:
        f.write("4242\\n")
    os.rename(d + "/t", "${path}")`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    // the reader as the shipped binary: read permission for this folder (and the code) only
    const reader = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--allow-read=${dir},${ROOT}`,
        `${ROOT}/tests/support/read_race.ts`,
        path,
        "3000",
      ],
      stdin: "null",
      signal: AbortSignal.timeout(60_000),
    }).output();
    swapper.kill("SIGKILL");
    await swapper.status;
    const { outcomes, slowest } = JSON.parse(new TextDecoder().decode(reader.stdout)) as {
      outcomes: Record<string, number>;
      slowest: number;
    };
    for (const outcome of Object.keys(outcomes)) {
      assert.ok(/^(read 4242|missing|refused)$/.test(outcome), JSON.stringify(outcomes));
    }
    assert.ok((outcomes["read 4242"] ?? 0) > 0, "the real file was read between swaps");
    assert.ok(slowest < 1500, `the slowest read took ${slowest} ms`);
  });
});
