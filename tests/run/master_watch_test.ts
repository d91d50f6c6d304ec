/**
 * The master at each step while every probe answers: the pid file is a hint read now and then,
 * and a master whose exit was seen is looked for in the process table at once.
 */
import assert from "node:assert/strict";
import { masterOfStep, PID_HINT_MS } from "../../src/run/master_watch.ts";
import type { TargetContext } from "../../src/run/context.ts";
import { freshMemory } from "../../src/run/state.ts";
import { FakeClock, FakeRunner } from "../support/fakes.ts";

function context() {
  const clock = new FakeClock();
  const reads: string[] = [];
  // the process table: one root master of the configuration, pid 2000
  const runner = new FakeRunner(() => ({
    stdout: "2000 1 0 0 php-fpm8.2 php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)\n",
  }));
  const memory = freshMemory();
  memory.state.masterPid = 1000;
  const ctx = {
    cfg: { tools: { ps: "/usr/bin/ps" }, init: "sysv" },
    deps: {
      clock,
      runner,
      fs: {
        readUntrusted: (path: string) => {
          reads.push(path);
          return Promise.resolve("1000\n");
        },
      },
    },
    target: {
      name: "php8.2-fpm",
      pidFile: "/run/php/php8.2-fpm.pid",
      fpmConfig: "/etc/php/8.2/fpm/php-fpm.conf",
      fpm: { service: "php8.2-fpm", processName: "php-fpm8.2" },
    },
    memory,
    // the table was read at the start
    masterLookedAt: clock.now() - 60_000,
  } as unknown as TargetContext;
  return { ctx, clock, reads, runner };
}

Deno.test("master of a step: while every probe answers, the pid file is read at most every 5 s and the table not at all", async () => {
  const { ctx, clock, reads, runner } = context();
  for (let s = 0; s < 20; s++) {
    const view = await masterOfStep(ctx, false);
    assert.equal(view.live, 1000);
    clock.advance(1000);
  }
  assert.equal(reads.length, 20_000 / PID_HINT_MS, `pid file read ${reads.length} times in 20 s`);
  assert.equal(runner.calls.length, 0, "no ps");
});

Deno.test("master of a step: after the master's exit was seen, the table is read at once though the probe answers", async () => {
  const { ctx, runner } = context();
  await masterOfStep(ctx, false);
  ctx.masterExited = true;
  await masterOfStep(ctx, false);
  assert.equal(runner.calls.length, 1, "the table read once");
  assert.match(runner.lines()[0]!, /\/ps /);
  assert.equal(ctx.masterExited, false, "told once");
  // the flag is spent: the next healthy step trusts what it found
  await masterOfStep(ctx, false);
  assert.equal(runner.calls.length, 1);
});
