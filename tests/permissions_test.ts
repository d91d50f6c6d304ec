/** The permission set that `start` runs with and `compile` embeds covers every program we run. */
import assert from "node:assert/strict";
import meta from "../deno.json" with { type: "json" };
import { TOOL_PROGRAMS, toolPaths } from "../src/act/service.ts";
import { SENDMAIL_PATHS } from "../src/config/mail_settings.ts";
import { fpmBinaryCandidates } from "../src/act/service.ts";
import { startCommand } from "./support/cli.ts";

Deno.test("permission set: run access to every tool path, by absolute path only", () => {
  const run = meta.permissions["php-relaunch"].run;
  for (const tool of [...TOOL_PROGRAMS, "systemd-notify"]) {
    for (const path of toolPaths(tool)) assert.ok(run.includes(path), `missing ${path}`);
  }
  for (const path of SENDMAIL_PATHS) assert.ok(run.includes(path), `missing ${path}`);
  // php-fpm's configuration test, for the versions Debian, Ubuntu and Sury's packages ship
  for (const version of ["", "5.6", "7.0", "7.4", "8.0", "8.1", "8.2", "8.3", "8.4", "8.5"]) {
    for (const path of fpmBinaryCandidates(`php-fpm${version}`)) {
      assert.ok(run.includes(path), `missing ${path}`);
    }
  }
  for (const entry of run) assert.ok(entry.startsWith("/"), `${entry} would depend on PATH`);
});

Deno.test("permission set, V8 flags, no code cache: start and compile use the same ones", () => {
  assert.match(meta.tasks.start, /-P=php-relaunch /);
  const build = Deno.readTextFileSync(new URL("../scripts/build.sh", import.meta.url));
  assert.match(build, /-P=php-relaunch /);
  // the memory figures of the benchmark hold for the binary only if it runs V8 as `start` does
  const start = /--v8-flags=(\S+)/.exec(meta.tasks.start)?.[1];
  assert.ok(start !== undefined, "start sets V8 flags");
  assert.equal(/^v8_flags="(.*)"$/m.exec(build)?.[1], start);
  assert.match(build, /compile [^\n]*--v8-flags="\$v8_flags"/);
  // no code cache: the binary's would be a file in $TMPDIR that root loads back
  assert.match(build, /compile [^\n]*--no-code-cache /);
  assert.match(meta.tasks.start, /^deno run [^\n]*--no-code-cache /);
});

Deno.test("permission set: reads and writes only the folders php-relaunch uses, never /tmp or /", () => {
  const { read, write, sys } = meta.permissions["php-relaunch"];
  assert.ok(
    Array.isArray(read) && Array.isArray(write),
    "read and write are lists, not everything",
  );
  for (const path of [...read, ...write]) {
    assert.ok(!["/", "/tmp", "/home", "/root"].includes(path), `${path} is too wide`);
  }
  for (
    const path of ["/var/lib/php-relaunch", "/var/log", "/run", "/var/run", "/var/lock"]
  ) assert.ok(write.includes(path), `may write ${path}`);
  assert.ok(read.includes("/etc") && read.includes("/usr/local/etc"), "reads configurations");
  assert.ok(!write.some((p: string) => p.startsWith("/etc")), "never writes /etc");
  assert.deepEqual(sys, ["hostname", "uid", "systemMemoryInfo"]);
});

Deno.test("deno task start: only the program speaks (no warning of Deno's about config permissions)", async () => {
  assert.match(meta.tasks.start, /^deno run -q /);
  const [cmd, args] = startCommand(["--version"]);
  const out = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  assert.equal(out.code, 0);
  assert.equal(new TextDecoder().decode(out.stderr), "");
  assert.match(new TextDecoder().decode(out.stdout), /^php-relaunch \d/);
});
