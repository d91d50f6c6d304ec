import assert from "node:assert/strict";
import { realRunner } from "../../src/act/process.ts";

Deno.test("runner: exit code, stdout and stderr; a non-zero exit is a result", async () => {
  const r = await realRunner.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], {
    timeoutMs: 5000,
  });
  assert.deepEqual(r, {
    code: 3,
    signal: null,
    stdout: "out",
    stderr: "err",
    timedOut: false,
    truncated: false,
  });
});

Deno.test("runner: arguments are passed as they are, never through a shell", async () => {
  const r = await realRunner.run("/bin/echo", ["a b", "$(id)", ";", "*"], { timeoutMs: 5000 });
  assert.equal(r.stdout, "a b $(id) ; *");
});

Deno.test("runner: PATH is the system's, whatever cron gave us", async () => {
  const r = await realRunner.run("/bin/sh", ["-c", "echo $PATH"], { timeoutMs: 5000 });
  assert.match(r.stdout, /\/usr\/sbin/);
});

Deno.test("runner: a missing program throws NotFound", async () => {
  await assert.rejects(
    () => realRunner.run("/nonexistent/service", [], { timeoutMs: 1000 }),
    Deno.errors.NotFound,
  );
});

Deno.test("runner: on timeout the whole process group dies, TERM-ignoring children included", async () => {
  // a unique duration lets pgrep -f find exactly this sleep
  const marker = `30.${crypto.getRandomValues(new Uint32Array(1))[0]}`;
  const started = Date.now();
  const r = await realRunner.run(
    "/bin/sh",
    ["-c", `trap '' TERM; sleep ${marker} & wait`],
    { timeoutMs: 300 },
  );
  assert.equal(r.timedOut, true);
  assert.ok(Date.now() - started < 10_000);
  const left = await new Deno.Command("pgrep", { args: ["-f", `sleep ${marker}`], stdout: "null" })
    .output();
  assert.equal(left.code, 1, "no grandchild survived");
});

Deno.test("runner: a daemon that keeps our pipes open does not hold us up", async () => {
  const started = Date.now();
  const r = await realRunner.run("/bin/sh", ["-c", "setsid sleep 20 & echo $!"], {
    timeoutMs: 10_000,
  });
  const daemon = Number(r.stdout);
  try {
    assert.equal(r.code, 0);
    assert.ok(daemon > 0, `daemon pid ${r.stdout}`);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  } finally {
    if (daemon > 0) Deno.kill(daemon, "SIGKILL");
  }
});

Deno.test("runner: a long output keeps its first 64 KiB, or with tailBytes its last lines", async () => {
  // 100000 lines, about 575 KiB
  const head = await realRunner.run("/usr/bin/seq", ["1", "100000"], { timeoutMs: 10_000 });
  assert.ok(head.stdout.startsWith("1\n2\n3\n"));
  assert.ok(head.stdout.length <= 64 * 1024);
  const tail = await realRunner.run("/usr/bin/seq", ["1", "100000"], {
    timeoutMs: 10_000,
    tailBytes: 1000,
  });
  const lines = tail.stdout.split("\n");
  assert.equal(lines.at(-1), "100000", "the newest line kept");
  assert.ok(tail.stdout.length <= 1000);
  assert.equal(Number(lines[0]) + lines.length - 1, 100000, "whole lines, from a line's start");
  const short = await realRunner.run("/usr/bin/seq", ["1", "3"], {
    timeoutMs: 5000,
    tailBytes: 1000,
  });
  assert.equal(short.stdout, "1\n2\n3", "a short output whole");
});
