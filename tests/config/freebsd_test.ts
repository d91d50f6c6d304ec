/**
 * FreeBSD, as far as it can be checked on Linux: the paths and commands a FreeBSD host gets,
 * and the rc.d script's shape. Not run on FreeBSD here (no such machine in this workplace).
 */
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli.ts";
import { loadConfig } from "../../src/config/load.ts";
import { serviceCommands } from "../../src/act/service.ts";
import { ROOT } from "../support/cli.ts";
import { fakeFs, fakeHost, testDeps } from "../support/fakes.ts";

/** FreeBSD 14 with the php82 package: rc.d script php_fpm, binaries in /usr/local/sbin. */
function freebsd(files: Record<string, string> = {}) {
  return testDeps({
    host: fakeHost(0, {}, "freebsd"),
    fs: fakeFs({
      executables: [
        "/usr/sbin/service",
        "/bin/ps",
        "/bin/kill",
        "/usr/local/sbin/php-fpm",
      ],
      dirs: { "/usr/local/etc/rc.d": ["php_fpm", "nginx"] },
      exists: ["/var/run"],
      files,
    }),
  });
}

Deno.test("FreeBSD: rc.d's php_fpm found, /usr/local/etc config, /var/db state, /var/run lock", async () => {
  const config = `[[target]]\nname = "www"\nurl = "http://127.0.0.1:8889/php-heartbeat.php"\n`;
  const deps = freebsd({ "/usr/local/etc/php-relaunch/config.toml": config });
  const { mode, raw } = parseCommandLine(["watch"]);
  const cfg = await loadConfig(mode as "watch", raw, deps);
  assert.equal(cfg.configFile, "/usr/local/etc/php-relaunch/config.toml");
  assert.equal(cfg.init, "freebsd");
  assert.equal(cfg.stateDir, "/var/db/php-relaunch");
  assert.equal(cfg.lockDir, "/var/run/php-relaunch");
  const t = cfg.targets[0]!;
  assert.deepEqual(t.fpm, { service: "php_fpm", processName: "php-fpm" });
  assert.equal(t.pidFile, "/var/run/php-fpm.pid");
  assert.equal(t.fpmConfig, "/usr/local/etc/php-fpm.conf");
  assert.deepEqual(serviceCommands("freebsd", cfg.tools, "php_fpm").restart, [
    ["/usr/sbin/service", ["php_fpm", "onerestart"]],
  ]);
});

Deno.test("FreeBSD rc.d script: watch mode under daemon(8), reload by SIGHUP, off by default", async () => {
  const path = `${ROOT}/packaging/freebsd/php_relaunch`;
  const script = await Deno.readTextFile(path);
  assert.match(script, /^# PROVIDE: php_relaunch$/m);
  assert.match(script, /^# REQUIRE: .*php_fpm/m);
  assert.match(script, /^\. \/etc\/rc\.subr$/m);
  assert.match(script, /php_relaunch_enable:=NO/);
  assert.match(script, /php_relaunch_config:=\/usr\/local\/etc\/php-relaunch\/config\.toml/);
  assert.match(script, /command_args="-f -p \$\{pidfile\} \$\{procname\} watch --config /);
  assert.match(script, /^sig_reload="HUP"$/m);
  assert.match(script, /^run_rc_command "\$1"$/m);
  assert.equal(((await Deno.stat(path)).mode ?? 0) & 0o111, 0o111, "executable");
  const syntax = await new Deno.Command("/bin/sh", { args: ["-n", path] }).output();
  assert.equal(syntax.code, 0, "valid sh");
});
