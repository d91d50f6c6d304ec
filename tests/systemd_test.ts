/** The shipped service files: the unit runs watch mode as Type=notify, the example config is valid. */
import assert from "node:assert/strict";
import { parseConfigFile } from "../src/config/file.ts";
import { ROOT } from "./support/cli.ts";

Deno.test("systemd unit: watch mode, notify with a watchdog, restart on failure, reload by SIGHUP", async () => {
  const unit = await Deno.readTextFile(`${ROOT}/systemd/php-relaunch.service`);
  const value = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(unit)?.[1];
  assert.equal(value("Type"), "notify");
  assert.match(value("WatchdogSec") ?? "", /^\d+s$/);
  // systemd-notify is a child process: NotifyAccess=main drops its READY=1 (seen under systemd)
  assert.equal(value("NotifyAccess"), "all");
  assert.equal(value("Restart"), "on-failure");
  assert.equal(value("RestartPreventExitStatus"), "2", "a bad configuration is not restarted");
  assert.match(value("ExecStart") ?? "", /^\/usr\/local\/bin\/php-relaunch watch --config /);
  assert.match(value("ExecReload") ?? "", /kill -HUP \$MAINPID/);
  assert.match(value("CapabilityBoundingSet") ?? "", /CAP_KILL/, "must be able to kill php-fpm");
  assert.equal(value("ProtectSystem"), "strict");
  assert.match(value("ReadWritePaths") ?? "", /\/var\/log/);
  // root's locks: /run/php-relaunch, 0700, kept while cron runs may hold them; never /run/lock
  assert.equal(value("RuntimeDirectory"), "php-relaunch");
  assert.equal(value("RuntimeDirectoryMode"), "0700");
  assert.equal(value("RuntimeDirectoryPreserve"), "yes");
  assert.doesNotMatch(value("ReadWritePaths") ?? "", /\/run\/lock/);
});

Deno.test("the example config is valid and names its defaults truthfully", async () => {
  const text = await Deno.readTextFile(`${ROOT}/systemd/config.example.toml`);
  const file = parseConfigFile("config.example.toml", text);
  assert.ok(!Array.isArray(file), Array.isArray(file) ? file.join("\n") : "");
  const { WATCH_DEFAULTS } = await import("../src/config/file.ts");
  const d = file.defaults;
  assert.equal(d.interval, WATCH_DEFAULTS.interval);
  assert.equal(d.failure_threshold, WATCH_DEFAULTS.failure_threshold);
  assert.equal(d.timeout_threshold, WATCH_DEFAULTS.timeout_threshold);
  assert.equal(d.max_restarts, WATCH_DEFAULTS.max_restarts);
  assert.equal(d.restart_window, WATCH_DEFAULTS.restart_window);
  assert.equal(d.start_timeout, WATCH_DEFAULTS.start_timeout);
  assert.deepEqual(d.rungs, WATCH_DEFAULTS.rungs);
  assert.equal(d.stuck_after, WATCH_DEFAULTS.stuck_after);
  assert.equal(d.on_overload, WATCH_DEFAULTS.on_overload);
  assert.equal(d.warn_listen_queue, WATCH_DEFAULTS.warn_listen_queue);
  assert.equal(d.warn_slow_requests, WATCH_DEFAULTS.warn_slow_requests);
  assert.equal(d.warn_max_children, WATCH_DEFAULTS.warn_max_children);
  assert.equal(d.warn_every, WATCH_DEFAULTS.warn_every);
  assert.deepEqual(d.retry_after, WATCH_DEFAULTS.retry_after);
  assert.equal(d.pause_default, WATCH_DEFAULTS.pause_default);
  assert.equal(d.pause_max, WATCH_DEFAULTS.pause_max);
  assert.equal(file.target[0]?.service, "php8.2-fpm");
});
