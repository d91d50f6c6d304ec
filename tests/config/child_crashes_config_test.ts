/** warn_child_crashes and nginx_error_log in the configuration file, and in a target's state. */
import assert from "node:assert/strict";
import { MAX_CHILD_CRASHES, parseConfigFile, WATCH_DEFAULTS } from "../../src/config/file.ts";
import { MAX_CRASH_POOLS } from "../../src/run/crash_policy.ts";
import { fileStateStore, freshMemory } from "../../src/run/state.ts";

const file = (keys: string) =>
  parseConfigFile(
    "/etc/php-relaunch/config.toml",
    `[defaults]\n${keys}\n[[target]]\nname = "a"\nurl = "http://127.0.0.1:8889/hb.php"\n`,
  );

Deno.test("config: warn_child_crashes is 5 in 60 s by default, a number, or N in a duration", () => {
  assert.deepEqual(WATCH_DEFAULTS.warn_child_crashes, { count: 5, windowMs: 60_000 });
  assert.equal(WATCH_DEFAULTS.nginx_error_log, "/var/log/nginx/error.log");
  const at = (keys: string) => {
    const c = file(keys);
    assert.ok(!Array.isArray(c), JSON.stringify(c));
    return c.defaults;
  };
  assert.deepEqual(at("warn_child_crashes = 10").warn_child_crashes, {
    count: 10,
    windowMs: 60_000,
  });
  assert.deepEqual(at('warn_child_crashes = "3 in 5m"').warn_child_crashes, {
    count: 3,
    windowMs: 300_000,
  });
  assert.deepEqual(at("warn_child_crashes = 0").warn_child_crashes, { count: 0, windowMs: 60_000 });
  assert.equal(at('nginx_error_log = ""').nginx_error_log, "");
  for (const bad of ["-1", "101", '"five"', '"5 in 0s"', '"5 in forever"', "1.5"]) {
    const r = file(`warn_child_crashes = ${bad}`);
    assert.ok(Array.isArray(r), bad);
    assert.match(
      r[0]!,
      /defaults\.warn_child_crashes: .* expected a number of crashes from 0 \(off\) to 100/,
      bad,
    );
  }
  const rel = file('nginx_error_log = "error.log"');
  assert.ok(Array.isArray(rel));
  assert.match(rel[0]!, /nginx_error_log: "error\.log" is not allowed: expected an absolute path/);
});

Deno.test("state: where the error log was read, and the open crash incidents, are kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-crash-state-" });
  try {
    const store = fileStateStore(`${dir}/t.json`);
    const memory = {
      ...freshMemory(),
      childCrashes: {
        file: { path: "/var/log/php8.2-fpm.log", ino: 1234, offset: 56_789 },
        journal: null,
        pools: {
          www: {
            recent: [],
            incident: {
              id: "20261203-100001-000",
              since: 1000,
              lastAt: 9000,
              seenAt: 9500,
              signals: { SIGSEGV: 7 },
            },
          },
        },
      },
    };
    memory.counters = { ...memory.counters, childDeaths: { www: { SIGSEGV: 7, SIGKILL: 1 } } };
    await store.save(memory);
    assert.deepEqual(await store.load(), memory);
    // a part that does not parse starts from the log's end; the rest is kept
    const text = (await Deno.readTextFile(`${dir}/t.json`)).replace(
      '"offset":56789',
      '"offset":-1',
    );
    await Deno.writeTextFile(`${dir}/t.json`, text);
    const loaded = await store.load();
    assert.deepEqual(loaded.childCrashes, { file: null, journal: null, pools: {} });
    assert.deepEqual(loaded.counters.childDeaths, { www: { SIGSEGV: 7, SIGKILL: 1 } });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state: the most crash memory there can be stays far below the state file's 1 MiB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-crash-state-" });
  try {
    const store = fileStateStore(`${dir}/t.json`);
    const recent = Array.from({ length: MAX_CHILD_CRASHES }, (_, i) => ({
      at: 1_764_756_001_000 + i,
      name: "SIGSEGV",
    }));
    const pools = Object.fromEntries(
      Array.from({ length: MAX_CRASH_POOLS }, (_, i) => [`pool-${"x".repeat(58)}${i}`, {
        recent,
        incident: null,
      }]),
    );
    const memory = { ...freshMemory(), childCrashes: { file: null, journal: null, pools } };
    await store.save(memory);
    const size = (await Deno.stat(`${dir}/t.json`)).size;
    assert.ok(size < 256 * 1024, `${size} bytes`);
    assert.deepEqual((await store.load()).childCrashes, memory.childCrashes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
