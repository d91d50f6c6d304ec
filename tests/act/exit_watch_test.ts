/** The real exit watch (pidwait, else tail --pid) against real processes of the test's own. */
import assert from "node:assert/strict";
import { masterExitWatch } from "../../src/act/exit_watch.ts";

function sleeper(): Deno.ChildProcess {
  return new Deno.Command("/bin/sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
}

/** Whether `p` settles within `ms`. */
async function settles(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((r) => timer = setTimeout(() => r(false), ms));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

for (const [how, pidwait] of [["pidwait", undefined], ["tail", []]] as const) {
  Deno.test(`exit watch (${how}): fires within a second of the process's exit, not before`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "php-relaunch-exit-" });
    const child = sleeper();
    const watch = masterExitWatch(child.pid, `${dir}/a.master-pid`, pidwait);
    try {
      assert.equal(await settles(watch.exited, 600), false, "alive: nothing fires");
      child.kill("SIGKILL");
      await child.status;
      assert.equal(await settles(watch.exited, 2000), true, "gone: it fires");
    } finally {
      watch.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("exit watch: pidwait wakes on a zombie, not only once it is reaped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-exit-" });
  // sh starts a short sleep, then becomes a long one that never reaps it: a zombie for 30 s
  const parent = new Deno.Command("/bin/sh", {
    args: ["-c", "sleep 0.3 & echo $!; exec sleep 30"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = parent.stdout.getReader();
  const first = await reader.read();
  reader.releaseLock();
  const pid = Number(new TextDecoder().decode(first.value).trim());
  const watch = masterExitWatch(pid, `${dir}/a.master-pid`);
  try {
    assert.ok(pid > 0);
    assert.equal(await settles(watch.exited, 3000), true, "fired while a zombie");
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    assert.equal(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3), "Z");
  } finally {
    watch.stop();
    parent.kill("SIGKILL");
    await parent.stdout.cancel();
    await parent.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exit watch: stopped, it never fires; with neither tool, it never fires either", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-exit-" });
  const child = sleeper();
  const watch = masterExitWatch(child.pid, `${dir}/a.master-pid`);
  watch.stop();
  try {
    assert.equal(await settles(watch.exited, 800), false);
    const none = masterExitWatch(child.pid, `${dir}/b.master-pid`, [], ["/nonexistent/tail"]);
    assert.equal(await settles(none.exited, 300), false);
    none.stop();
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
});
