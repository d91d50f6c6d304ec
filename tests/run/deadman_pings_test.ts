import assert from "node:assert/strict";
import type { Config, Target } from "../../src/config/settings.ts";
import { failureOfExit, pingAfterRun, watchPings } from "../../src/run/deadman_pings.ts";
import type { Beat } from "../../src/run/liveness.ts";
import type { TargetWatch } from "../../src/run/target.ts";
import type { DeadmanPing } from "../../src/shared/deps.ts";
import { ExitCode } from "../../src/shared/errors.ts";
import { captureLogs, FakeClock, testDeps, until } from "../support/fakes.ts";

const SECRET = "6f1d0c9e-2a44-4b8e-a1c3-0123456789ab";
const URL_ = new URL(`https://hc-ping.com/${SECRET}`);

/** The parts of a target and a configuration the pings look at. */
function config(everyMs: number | null, stateDir: string): Config {
  const target = { name: "php82", timeoutMs: 5000, policy: { intervalMs: 5000 } };
  return {
    targets: [target as unknown as Target],
    deadman: everyMs === null ? null : { url: URL_, everyMs },
    stateDir,
  } as unknown as Config;
}

/** A loop's beat with a watch whose state says whether it gave up, and whether it restarts. */
function beat(at: number, o: { givenUp?: boolean; restarting?: boolean } = {}): Beat {
  const state = o.givenUp
    ? { givenUpAt: at - 1000, incident: { kind: "php_down" } }
    : { givenUpAt: null, incident: null };
  return {
    at,
    watch: {
      responder: { restarting: o.restarting ?? false },
      memory: { state },
    } as unknown as TargetWatch,
  };
}

/** A ping that records when and where it went, and answers 200. */
function recorder(clock: FakeClock): DeadmanPing & { pings: { at: number; url: string }[] } {
  const pings: { at: number; url: string }[] = [];
  const ping: DeadmanPing = (url) => {
    pings.push({ at: clock.now(), url: url.href });
    return Promise.resolve(200);
  };
  return Object.assign(ping, { pings });
}

async function withStateDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-deadman-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("deadman pings: a cron run pings its URL when it exits 0, its /fail otherwise", async () => {
  await withStateDir(async (dir) => {
    const clock = new FakeClock();
    const ping = recorder(clock);
    const deps = testDeps({ clock, deadmanPing: ping });
    const cfg = config(60_000, dir);
    assert.equal(await pingAfterRun(cfg, deps, () => Promise.resolve(ExitCode.Ok)), 0);
    for (const code of [ExitCode.PhpDown, ExitCode.Misconfigured, ExitCode.Unreachable]) {
      assert.equal(await pingAfterRun(cfg, deps, () => Promise.resolve(code)), code);
    }
    await assert.rejects(
      () => pingAfterRun(cfg, deps, () => Promise.reject(new Error("a bug"))),
      /a bug/,
    );
    assert.deepEqual(ping.pings.map((p) => p.url), [
      URL_.href,
      `${URL_.href}/fail`,
      `${URL_.href}/fail`,
      `${URL_.href}/fail`,
      `${URL_.href}/fail`,
    ]);
    // without a switch nothing is pinged (the fake would reject: "unexpected ping")
    const none = testDeps({ clock });
    assert.equal(await pingAfterRun(config(null, dir), none, () => Promise.resolve(3)), 3);
  });
});

Deno.test("deadman pings: an exit code's failure says what it means", () => {
  assert.equal(failureOfExit(0), null);
  assert.equal(failureOfExit(3), "exit 3: php-fpm failed and is still down");
  assert.match(failureOfExit(7)!, /^exit 7: the heartbeat's host refused/);
  assert.equal(failureOfExit(1), "exit 1");
});

/**
 * Watch mode's pings every 10 s on a fake clock, while `drive` runs (it sees the clock, the
 * pings so far and the loops' beats); stopped after it, whatever it throws.
 */
async function drivePings(
  drive: (
    clock: FakeClock,
    ping: ReturnType<typeof recorder>,
    beats: Map<string, Beat>,
  ) => Promise<void>,
): Promise<ReturnType<typeof recorder>> {
  const clock = new FakeClock();
  const ping = recorder(clock);
  const beats = new Map<string, Beat>([["php82", beat(clock.now())]]);
  await withStateDir(async (dir) => {
    const pings = watchPings(
      () => config(10_000, dir),
      beats,
      testDeps({ clock, deadmanPing: ping }),
    );
    try {
      await drive(clock, ping, beats);
    } finally {
      await pings.stop();
    }
  });
  return ping;
}

Deno.test("deadman pings: watch mode pings at once, then every period while its loop beats", async () => {
  let start = 0;
  const ping = await drivePings(async (clock, ping, beats) => {
    start = clock.now();
    // the loop beats at every ping, as a probe loop with a 5 s interval would
    assert.ok(
      await until(() => {
        beats.set("php82", beat(clock.now()));
        return ping.pings.length >= 5;
      }),
    );
  });
  assert.deepEqual(
    ping.pings.slice(0, 5).map((p) => p.at - start),
    [0, 10_000, 20_000, 30_000, 40_000],
  );
  assert.ok(ping.pings.every((p) => p.url === URL_.href));
});

Deno.test("deadman pings: a silent probe loop stops them, logged once; its beat starts them again", async () => {
  const logs = captureLogs();
  await drivePings(async (clock, ping, beats) => {
    const lastBeat = clock.now();
    // the loop beats no more: it hangs (2 periods, its interval and its timeout: 30 s)
    assert.ok(await until(() => clock.now() - lastBeat > 120_000));
    const late = ping.pings.filter((p) => p.at > lastBeat + 30_000);
    assert.deepEqual(late, [], "no ping once the loop was silent too long");
    assert.ok(ping.pings.length >= 3, "pinged until then");
    // a long restart is slow, not hung: pinged again, and so once the loop beats again
    beats.set("php82", beat(lastBeat, { restarting: true }));
    const before = ping.pings.length;
    assert.ok(await until(() => ping.pings.length > before + 2));
    beats.set("php82", beat(clock.now()));
    assert.ok(await until(() => ping.pings.length > before + 4));
  });
  const lines = logs.lines();
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(
    lines[0]!,
    /^Dead-man's switch https:\/\/hc-ping\.com\/…: not pinged while the probe loop of php82 makes no progress\.$/,
  );
  assert.match(lines[1]!, /pinged again: the probe loop of php82 goes on\.$/);
  assert.ok(!lines.join("\n").includes(SECRET));
});

Deno.test("deadman pings: watch mode pings /fail while a target is given up", async () => {
  let givenUp = true;
  const ping = await drivePings(async (clock, ping, beats) => {
    assert.ok(
      await until(() => {
        beats.set("php82", beat(clock.now(), { givenUp }));
        if (ping.pings.length === 3) givenUp = false;
        return ping.pings.length >= 5;
      }),
    );
  });
  const urls = ping.pings.map((p) => p.url);
  assert.ok(urls.slice(1, 3).every((u) => u === `${URL_.href}/fail`), urls.join("\n"));
  assert.equal(urls.at(-1), URL_.href, "healthy again: pinged as alive");
});

Deno.test("deadman pings: none without a switch, until a reload sets one; stop ends them", async () => {
  await withStateDir(async (dir) => {
    const clock = new FakeClock();
    const ping = recorder(clock);
    let cfg = config(null, dir);
    const pings = watchPings(() => cfg, new Map(), testDeps({ clock, deadmanPing: ping }));
    await until(() => false, 50);
    assert.equal(ping.pings.length, 0);
    assert.equal(clock.sleeps.length, 0, "no loop of its own, so no clock moved");
    cfg = config(10_000, dir);
    pings.wake();
    assert.ok(await until(() => ping.pings.length >= 2));
    await pings.stop();
    const stopped = ping.pings.length;
    await until(() => false, 50);
    assert.equal(ping.pings.length, stopped, "none after stop");
  });
});
