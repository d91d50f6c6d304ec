/** The real exit watch (tail --pid) against a real process of the test's own. */
import assert from "node:assert/strict";
import { tailExitWatch } from "../../src/act/exit_watch.ts";

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

Deno.test("exit watch: fires within a second of the process's exit, not before", async () => {
  const child = sleeper();
  const watch = tailExitWatch(child.pid);
  try {
    assert.equal(await settles(watch.exited, 600), false, "alive: nothing fires");
    child.kill("SIGKILL");
    await child.status;
    assert.equal(await settles(watch.exited, 2000), true, "gone: it fires");
  } finally {
    watch.stop();
  }
});

Deno.test("exit watch: stopped, it never fires; no tail means it never fires either", async () => {
  const child = sleeper();
  const watch = tailExitWatch(child.pid);
  watch.stop();
  try {
    assert.equal(await settles(watch.exited, 800), false);
    const none = tailExitWatch(child.pid, ["/nonexistent/tail"]);
    assert.equal(await settles(none.exited, 300), false);
    none.stop();
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});
