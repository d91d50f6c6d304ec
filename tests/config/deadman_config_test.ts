/** [deadman] in the configuration file, --deadman-url and $PHP_RELAUNCH_DEADMAN_URL. */
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli.ts";
import { describeConfig } from "../../src/commands/check_config.ts";
import { parseConfigFile } from "../../src/config/file.ts";
import { loadConfig } from "../../src/config/load.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { debianFs, fakeHost, testDeps } from "../support/fakes.ts";

const SECRET = "a3c9e0f2-7d41-4b6a-8e15-cafe00c0ffee";
const PATH = "/etc/php-relaunch/config.toml";
const TARGET = `[[target]]\nname = "php82"\nurl = "http://127.0.0.1:8889/hb.php"\n`;

/** check-config of `argv` over a file with `deadman` as its [deadman] table, under `env`. */
async function check(deadman: string, argv: string[] = [], env: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-deadman-config-" });
  try {
    const deps = testDeps({
      host: fakeHost(1000, { HOME: dir, XDG_RUNTIME_DIR: dir, ...env }),
      fs: debianFs({ files: { [PATH]: `${deadman}\n${TARGET}` } }),
    });
    const { mode, raw } = parseCommandLine(["check-config", "--config", PATH, ...argv]);
    return await loadConfig(mode as "check", raw, deps);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The problems `check` throws. */
async function problems(deadman: string, argv: string[] = [], env: Record<string, string> = {}) {
  try {
    await check(deadman, argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("config: [deadman] url and every; every is 60 s unless it says", async () => {
  const cfg = await check(`[deadman]\nurl = "https://hc-ping.com/${SECRET}"\nevery = "30s"`);
  assert.equal(cfg.deadman?.url.href, `https://hc-ping.com/${SECRET}`);
  assert.equal(cfg.deadman?.everyMs, 30_000);
  assert.equal(
    (await check(`[deadman]\nurl = "https://hc-ping.com/${SECRET}"`)).deadman?.everyMs,
    60_000,
  );
  assert.equal((await check("")).deadman, null);
  // check-config shows it without its secret path
  const shown = describeConfig(cfg);
  assert.match(
    shown,
    /^dead-man {7}https:\/\/hc-ping\.com\/… \(healthchecks\.io style, \/fail when a run fails\): after each cron run; every 30 s in watch mode$/m,
  );
  assert.ok(!shown.includes(SECRET));
});

Deno.test("config: --deadman-url wins over $PHP_RELAUNCH_DEADMAN_URL, which wins over the file", async () => {
  const file = `[deadman]\nurl = "https://file.example.com/${SECRET}"\nevery = 5`;
  const env = { PHP_RELAUNCH_DEADMAN_URL: `https://env.example.com/${SECRET}` };
  const flag = ["--deadman-url", `http://127.0.0.1:8000/ping/${SECRET}`];
  assert.equal((await check(file, flag, env)).deadman?.url.host, "127.0.0.1:8000");
  assert.equal((await check(file, [], env)).deadman?.url.host, "env.example.com");
  assert.equal((await check(file)).deadman?.url.host, "file.example.com");
  // the period is the file's whichever URL is used
  assert.equal((await check(file, flag)).deadman?.everyMs, 5000);
  assert.equal((await check("[deadman]\nevery = 5", [], env)).deadman?.everyMs, 5000);
});

Deno.test("config: a bad [deadman] is one line naming the key, never the URL's path", async () => {
  for (
    const [table, expected] of [
      [
        "every = 0.5",
        /^\S+: deadman\.every: 0\.5 is not allowed: expected a duration from 1s to 1 hour/,
      ],
      ['every = "2h"', /^\S+: deadman\.every: "2h" is not allowed: expected a duration from 1s/],
      ['every = "soon"', /deadman\.every: "soon" is not allowed/],
      [
        "every = 10",
        /deadman\.every: set without a URL: give \[deadman\] url, --deadman-url or \$PHP_RELAUNCH_DEADMAN_URL$/,
      ],
      [
        `url = "ftp://hc.example.com/${SECRET}"`,
        /deadman\.url: .*not shown: it holds a secret\) is not allowed: expected an http:\/\/ or https:\/\/ push URL$/,
      ],
      [
        `url = "https://hc.example.com:6666/${SECRET}"`,
        /deadman\.url: Cannot use dead-man's switch URL https:\/\/hc\.example\.com:6666\/…: port 6666 is one that fetch refuses/,
      ],
      ["url = 5", /deadman\.url: the value \(number, not shown: it holds a secret\)/],
      [`ur1 = "https://hc-ping.com/${SECRET}"`, /deadman: unknown key "ur1"/],
    ] as const
  ) {
    const issues = await problems(`[deadman]\n${table}`);
    assert.equal(issues.length, 1, `${table}: ${issues.join("\n")}`);
    assert.match(issues[0]!, expected, table);
    assert.ok(!issues[0]!.includes(SECRET), issues[0]);
  }
  const flag = await problems("", ["--deadman-url", `gopher://x/${SECRET}`]);
  assert.deepEqual(flag, [
    "Cannot use dead-man's switch URL gopher://x/…: expected http:// or https://",
  ]);
  const unparsed = await problems("", [], { PHP_RELAUNCH_DEADMAN_URL: `hc-ping.com/${SECRET}` });
  assert.match(unparsed[0]!, /^Cannot parse the dead-man's switch URL \(48 characters, not shown/);
});

Deno.test("config: the shipped example's [deadman] parses", async () => {
  const text = await Deno.readTextFile(
    new URL("../../systemd/config.example.toml", import.meta.url),
  );
  const uncommented = text.replace(/^# (\[deadman\]|url = "https:\/\/hc-ping|every = )/gm, "$1");
  const file = parseConfigFile("config.example.toml", uncommented);
  assert.ok(!Array.isArray(file), JSON.stringify(file));
  assert.equal(file.deadman.every, 60_000);
  assert.match(file.deadman.url ?? "", /^https:\/\/hc-ping\.com\//);
});
