/** `[fleet]` user and password_file: etcd auth, the password from a root-only file. */
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli.ts";
import { describeConfig } from "../../src/commands/check_config.ts";
import { parseConfigFile } from "../../src/config/file.ts";
import { loadConfig } from "../../src/config/load.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { debianFs, fakeHost, testDeps } from "../support/fakes.ts";

const PASSWORD = "pw-7f3e9c1d-never-shown";
const PATH = "/etc/php-relaunch/config.toml";
const PW = "/etc/php-relaunch/etcd.password";
const TARGET = `[[target]]\nname = "php82"\nurl = "http://127.0.0.1:8889/hb.php"\n`;
const FLEET = `[fleet]\netcd = ["http://10.0.0.5:2379"]\nhosts = 3\n`;

/** check-config's configuration of `fleet` (then TARGET), the password file of `mode`. */
async function check(fleet: string, mode = 0o600, password = `${PASSWORD}\n`) {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-fleet-auth-" });
  try {
    const deps = testDeps({
      host: fakeHost(1000, { HOME: dir, XDG_RUNTIME_DIR: dir }),
      fs: debianFs({
        files: { [PATH]: `${fleet}\n${TARGET}`, [PW]: password },
        modes: { [PW]: mode },
      }),
    });
    const { mode: m, raw } = parseCommandLine(["check-config", "--config", PATH]);
    return await loadConfig(m as "check", raw, deps);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The problems `check` throws. */
async function problems(
  fleet: string,
  mode = 0o600,
  password = `${PASSWORD}\n`,
): Promise<readonly string[]> {
  try {
    await check(fleet, mode, password);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("fleet auth: user and password_file; check-config shows the user and the file only", async () => {
  const cfg = await check(`${FLEET}user = "php-relaunch"\npassword_file = "${PW}"`);
  assert.deepEqual(cfg.fleet?.auth, { user: "php-relaunch", passwordFile: PW, password: PASSWORD });
  const shown = describeConfig(cfg);
  assert.match(
    shown,
    /^ +etcd auth as user "php-relaunch", password from \/etc\/php-relaunch\/etcd\.password$/m,
  );
  assert.ok(!shown.includes(PASSWORD), "check-config never prints the password");
  assert.match(describeConfig(await check(FLEET)), /^ +no etcd auth$/m);
  assert.equal((await check(FLEET)).fleet?.auth, null);
});

Deno.test("fleet auth: one without the other, a file others can read, an empty one: one clear line", async () => {
  const both = /fleet: give both user and password_file \(etcd auth\), or neither/;
  const alone = await problems(`${FLEET}user = "php-relaunch"`);
  assert.equal(alone.length, 1, alone.join("\n"));
  assert.match(alone[0]!, both);
  const fileAlone = await problems(`${FLEET}password_file = "${PW}"`);
  assert.equal(fileAlone.length, 1, fileAlone.join("\n"));
  assert.match(fileAlone[0]!, both);
  const auth = `${FLEET}user = "php-relaunch"\npassword_file = "${PW}"`;
  for (const mode of [0o640, 0o604, 0o644]) {
    const open = await problems(auth, mode);
    assert.equal(open.length, 1, open.join("\n"));
    assert.equal(
      open[0],
      `Refusing etcd password file "${PW}": mode 0${
        mode.toString(8)
      } lets others read it; chmod 600 it`,
    );
  }
  const missing = await problems(
    `${FLEET}user = "php-relaunch"\npassword_file = "/etc/php-relaunch/nope"`,
  );
  assert.match(
    missing.join("\n"),
    /Cannot read etcd password file "\/etc\/php-relaunch\/nope": it does not exist/,
  );
  assert.deepEqual(await problems(auth, 0o600, "\n"), [
    `Refusing etcd password file "${PW}": it is empty`,
  ]);
  const text = [...alone, ...fileAlone, ...missing].join("\n");
  assert.ok(!text.includes(PASSWORD));
});

Deno.test("fleet auth: bad user names and relative paths are named", () => {
  const bad = parseConfigFile(
    "/c.toml",
    `${FLEET}user = "a b"\npassword_file = "etcd.password"\n${TARGET}`,
  );
  assert.ok(Array.isArray(bad));
  assert.match(bad.join("\n"), /fleet\.user: "a b" is not allowed: expected etcd's user name/);
  assert.match(
    bad.join("\n"),
    /fleet\.password_file: "etcd\.password" is not allowed: expected an absolute path/,
  );
});
