import assert from "node:assert/strict";
import {
  DeadmanSwitch,
  describeDeadman,
  directDeadmanPing,
  filePingMemory,
  type PingMemory,
  pingUrl,
} from "../../src/alert/deadman_switch.ts";
import type { DeadmanPing } from "../../src/shared/deps.ts";
import { captureLogs, FakeClock, fetchErrors } from "../support/fakes.ts";
import { withServer } from "../support/cli.ts";

const SECRET = "0f6c2a1e-5b7d-4c1a-9e3f-deadbeef0001";
const HC = new URL(`https://hc-ping.com/${SECRET}`);
const KUMA = new URL(`https://kuma.example.com/api/push/${SECRET}?status=up&msg=OK&ping=`);

/** A memory kept in this object, as the state file keeps it across cron runs. */
function memory(failingSince: number | null = null): PingMemory & { saves: (number | null)[] } {
  const saves: (number | null)[] = [];
  return {
    saves,
    load: () => Promise.resolve(failingSince),
    save: (at) => {
      failingSince = at;
      saves.push(at);
      return Promise.resolve();
    },
  };
}

/** A ping that answers `statuses` in turn (the last repeats), or throws an Error given there. */
function scripted(...answers: (number | Error)[]): DeadmanPing & { urls: string[] } {
  const urls: string[] = [];
  const ping = (url: URL) => {
    const answer = answers[Math.min(urls.length, answers.length - 1)]!;
    urls.push(url.href);
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  };
  return Object.assign(ping, { urls });
}

Deno.test("deadman: healthchecks.io's failure is /fail on the path; Uptime Kuma's is status=down", () => {
  assert.equal(pingUrl(HC, null).href, HC.href);
  assert.equal(pingUrl(HC, "exit 3").href, `${HC.href}/fail`);
  // a trailing slash, a slug URL's query and a self-hosted /ping/ prefix are kept
  assert.equal(
    pingUrl(new URL("https://hc.example.com/ping/KEY/web1-php/?create=1"), "x").href,
    "https://hc.example.com/ping/KEY/web1-php/fail?create=1",
  );
  const up = pingUrl(KUMA, null);
  assert.equal(up.pathname, `/api/push/${SECRET}`);
  assert.equal(up.searchParams.get("status"), "up");
  assert.equal(up.searchParams.get("msg"), "OK");
  const down = pingUrl(KUMA, "exit 7: nginx down");
  assert.equal(down.pathname, `/api/push/${SECRET}`, "no /fail on Kuma's path");
  assert.equal(down.searchParams.get("status"), "down");
  assert.equal(down.searchParams.get("msg"), "exit 7: nginx down");
});

Deno.test("deadman: check-config's line shows the scheme and host, never the secret path", () => {
  const hc = describeDeadman({ url: HC, everyMs: 60_000 });
  assert.equal(
    hc,
    "https://hc-ping.com/… (healthchecks.io style, /fail when a run fails): after each cron run; every 60 s in watch mode",
  );
  const kuma = describeDeadman({ url: KUMA, everyMs: 30_000 });
  assert.match(kuma, /^https:\/\/kuma\.example\.com\/… \(Uptime Kuma push, status=down/);
  for (const line of [hc, kuma]) assert.ok(!line.includes(SECRET));
  assert.match(describeDeadman(null), /^none/);
});

Deno.test("deadman: a failing ping is logged when it begins and when it works again, not each time", async () => {
  const logs = captureLogs();
  const clock = new FakeClock();
  const ping = scripted(502, fetchErrors.refused(), fetchErrors.dns(), 200, 200);
  const kept = memory();
  const sw = new DeadmanSwitch(HC, { clock, deadmanPing: ping }, kept);
  const results = [];
  for (let i = 0; i < 5; i++) {
    results.push(await sw.ping(null));
    clock.advance(60_000);
  }
  assert.deepEqual(results, [false, false, false, true, true]);
  const lines = logs.lines();
  assert.deepEqual(lines.map((l) => l.replace(/: .*/, "")), [
    "Dead-man's switch https://hc-ping.com/…",
    "Dead-man's switch https://hc-ping.com/…",
  ]);
  assert.match(lines[0]!, /the ping failed: it answered HTTP 502; pings go on, and this is said/);
  assert.match(lines[1]!, /pinged again, failing since 2023-11-14T22:13:20\.000Z\./);
  // the memory is written only when it changes
  assert.deepEqual(kept.saves, [clock.now() - 5 * 60_000, null]);
  for (const r of logs.records) assert.ok(!JSON.stringify(r).includes(SECRET), "no secret logged");
});

Deno.test("deadman: a failure the memory holds from an earlier run is not told again", async () => {
  const logs = captureLogs();
  const clock = new FakeClock();
  const since = clock.now() - 120_000;
  // three cron runs, each with a switch of its own on the same memory
  const kept = memory(since);
  for (let run = 0; run < 3; run++) {
    const sw = new DeadmanSwitch(HC, { clock, deadmanPing: scripted(503) }, kept);
    assert.equal(await sw.ping("exit 3"), false);
  }
  assert.deepEqual(logs.lines(), []);
  assert.deepEqual(kept.saves, []);
});

Deno.test("deadman: a ping that never answers ends at its deadline, redirects are failures", async () => {
  const logs = captureLogs();
  const clock = new FakeClock();
  // as fetch does: ends when its signal aborts, at once when it has
  const hangs: DeadmanPing = (_url, signal) =>
    new Promise((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason));
    });
  const started = Date.now();
  const slow = new DeadmanSwitch(HC, { clock, deadmanPing: hangs }, memory(), 50);
  assert.equal(await slow.ping(null), false);
  assert.ok(Date.now() - started < 2000, "ended by its deadline");
  assert.match(logs.lines()[0]!, /the ping failed: no answer within 0\.05 s/);
  // stopping (the signal) is no failure to tell
  const stop = new AbortController();
  stop.abort();
  const stopped = new DeadmanSwitch(HC, { clock, deadmanPing: hangs }, memory());
  assert.equal(await stopped.ping(null, stop.signal), false);
  assert.equal(logs.lines().length, 1);
  const moved = new DeadmanSwitch(HC, { clock, deadmanPing: scripted(302) }, memory());
  assert.equal(await moved.ping(null), false);
  assert.match(logs.lines()[1]!, /it answered HTTP 302 \(a redirect, not followed\)/);
});

Deno.test("deadman: the state file keeps the failure across runs; a corrupt one is no failure", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-deadman-" });
  try {
    const kept = filePingMemory(`${dir}/deadman.json`);
    assert.equal(await kept.load(), null, "none yet");
    await kept.save(1234);
    assert.equal(await filePingMemory(`${dir}/deadman.json`).load(), 1234);
    assert.equal((await Deno.stat(`${dir}/deadman.json`)).mode! & 0o777, 0o600);
    await Deno.writeTextFile(`${dir}/deadman.json`, "{nope");
    assert.equal(await kept.load(), null);
    // a folder that is gone: the save is skipped, never thrown
    await filePingMemory(`${dir}/gone/deadman.json`).save(1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deadman: the real ping is one GET, through no proxy, follows no redirect, reads no body", async () => {
  const seen: string[] = [];
  const before = Deno.env.get("HTTP_PROXY");
  // a dead proxy from root's shell: the ping goes straight to the push URL
  Deno.env.set("HTTP_PROXY", "http://127.0.0.1:47");
  try {
    await withServer((request) => {
      const url = new URL(request.url);
      seen.push(`${request.method} ${url.pathname}`);
      if (url.pathname === "/moved") {
        return new Response(null, { status: 302, headers: { location: "/elsewhere" } });
      }
      // a body that never ends: the ping must not wait for it
      const body = new ReadableStream({ pull: (c) => c.enqueue(new Uint8Array(1024)) });
      return new Response(body, { status: 200 });
    }, async (base) => {
      const signal = AbortSignal.timeout(5000);
      assert.equal(await directDeadmanPing(new URL(`${base}/${SECRET}`), signal), 200);
      assert.equal(await directDeadmanPing(new URL(`${base}/moved`), signal), 302);
      assert.ok(!signal.aborted, "answered before the deadline");
    });
  } finally {
    if (before === undefined) Deno.env.delete("HTTP_PROXY");
    else Deno.env.set("HTTP_PROXY", before);
  }
  assert.deepEqual(seen, [`GET /${SECRET}`, "GET /moved"], "the redirect was not followed");
});
