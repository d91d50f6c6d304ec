/** The shipped samples stay valid: the mcron job, and every crontab line in README and --help. */
import assert from "node:assert/strict";
import { parseCommandLine } from "../src/cli.ts";
import { USAGE } from "../src/usage.ts";
import { loadConfig } from "../src/config/load.ts";
import type { Mode } from "../src/config/settings.ts";
import { ROOT } from "./support/cli.ts";
import { debianFs, testDeps } from "./support/fakes.ts";

/** Splits a /bin/sh command line into words (quotes only; the samples use nothing else). */
function shellWords(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? "");
}

/** The php-relaunch arguments of a scheduler's command line, without redirections. */
function relaunchArgs(command: string): string[] {
  const words = shellWords(command.slice(command.indexOf("php-relaunch ")));
  return words.slice(1).filter((w) => !/^(>|2>&1|>\/dev\/null)/.test(w));
}

async function assertValid(command: string) {
  assert.ok(!command.includes("&>"), `dash runs "&>" as a background job: ${command}`);
  assert.match(command, />\s*\/dev\/null 2>&1/, `output discarded the POSIX way: ${command}`);
  const { mode, raw } = parseCommandLine(relaunchArgs(command));
  // a host with php-cgi too, for the lines that relaunch it
  const fs = debianFs({
    dirs: { "/etc/init.d": ["php8.2-fpm", "php8.2-cgi"] },
    executables: ["/usr/bin/php-cgi8.2"],
  });
  await loadConfig(mode as Mode, raw, testDeps({ fs }));
}

Deno.test("mcron/job.guile runs every 10 s with a 5 s timeout and valid arguments", async () => {
  const out = await new Deno.Command("mcron", {
    args: ["--schedule=3", `${ROOT}/mcron/job.guile`],
    stdout: "piped",
    stderr: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  assert.equal(out.code, 0);
  const text = new TextDecoder().decode(out.stdout);
  const times = [...text.matchAll(/^\w{3} (\w{3} +\d+ \d\d:\d\d:\d\d \d{4}) ([+-]\d{4})$/gm)]
    .map((m) => Date.parse(`${m[1]} ${m[2]}`));
  assert.equal(times.length, 3, text);
  assert.deepEqual([times[1]! - times[0]!, times[2]! - times[1]!], [10_000, 10_000]);
  const commands = text.split("\n").filter((l) => l.includes("php-relaunch "));
  assert.equal(commands.length, 3);
  const args = relaunchArgs(commands[0]!);
  assert.deepEqual(args.slice(0, 2), ["--run-for", "10"]);
  assert.equal(args[3], "5");
  await assertValid(commands[0]!);
});

Deno.test("every crontab line in README.md and --help is valid for /bin/sh and for php-relaunch", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const lines = [...readme.split("\n"), ...USAGE.split("\n")]
    .map((l) => l.trim().replace(/^`|`$/g, ""))
    .filter((l) => /^\* \* \* \* \* /.test(l));
  assert.ok(lines.length >= 4, `found ${lines.length} crontab lines`);
  for (const line of lines) await assertValid(line);
});

Deno.test({
  name: "nginx/php-fpm-status.conf is valid for php-fpm and gives php-relaunch its status page",
  ignore: !(await Deno.stat("/usr/sbin/php-fpm8.2").then(() => true, () => false)),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // a php-fpm.conf of our own that includes the sample after its www pool, as pool.d does
      await Deno.writeTextFile(
        `${dir}/php-fpm.conf`,
        [
          "[global]",
          `pid = ${dir}/fpm.pid`,
          `error_log = ${dir}/fpm.log`,
          "[www]",
          "user = www-data",
          "group = www-data",
          `listen = ${dir}/fpm.sock`,
          "pm = static",
          "pm.max_children = 2",
          `include = ${ROOT}/nginx/php-fpm-status.conf`,
          "",
        ].join("\n"),
      );
      const out = await new Deno.Command("/usr/sbin/php-fpm8.2", {
        args: ["-tt", "-y", `${dir}/php-fpm.conf`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, text);
      assert.match(text, /pm\.status_listen = 127\.0\.0\.1:909/);
      assert.match(text, /ping\.path = \/ping/);
      assert.match(text, /request_slowlog_timeout = 5s/);
      const { readFpmConfig } = await import("../src/fpm/config.ts");
      const { realDeps } = await import("../src/real.ts");
      const c = await readFpmConfig(realDeps().fs, `${dir}/php-fpm.conf`);
      assert.deepEqual(
        c?.pools.map((p) => [p.pool, p.statusListen, p.statusPath, p.pingPath, p.slowlog]),
        [["www", "127.0.0.1:909", "/status", "/ping", "/var/log/php8.2-fpm.www.slow.log"]],
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
