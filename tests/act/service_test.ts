import assert from "node:assert/strict";
import {
  detectInit,
  findFpmServices,
  findTools,
  processNameFor,
  serviceCommands,
  type Tools,
} from "../../src/act/service.ts";
import { DEBIAN_TOOLS, fakeFs, fakeHost } from "../support/fakes.ts";

const tools: Tools = {
  ...DEBIAN_TOOLS,
  systemctl: "/usr/bin/systemctl",
  rcService: "/sbin/rc-service",
};

const lines = (cmds: readonly (readonly [string, readonly string[]])[]) =>
  cmds.map(([cmd, args]) => [cmd, ...args].join(" "));

Deno.test("the exact commands of each init system", () => {
  const cases = {
    systemd: {
      start: ["/usr/bin/systemctl reset-failed php-fpm", "/usr/bin/systemctl start php-fpm"],
      restart: ["/usr/bin/systemctl reset-failed php-fpm", "/usr/bin/systemctl restart php-fpm"],
    },
    sysv: {
      start: ["/usr/sbin/service php-fpm start"],
      restart: ["/usr/sbin/service php-fpm restart"],
    },
    openrc: {
      start: ["/sbin/rc-service php-fpm start"],
      restart: ["/sbin/rc-service php-fpm restart"],
    },
    freebsd: {
      start: ["/usr/sbin/service php-fpm onestart"],
      restart: ["/usr/sbin/service php-fpm onerestart"],
    },
  } as const;
  for (const [init, want] of Object.entries(cases)) {
    const got = serviceCommands(init as keyof typeof cases, tools, "php-fpm");
    assert.deepEqual(lines(got.start), want.start, init);
    assert.deepEqual(lines(got.restart), want.restart, init);
  }
});

Deno.test("init detection: FreeBSD by OS, systemd and OpenRC by their /run folders, else sysv", async () => {
  const linux = fakeHost();
  assert.equal(await detectInit(fakeFs({ exists: ["/run/systemd/system"] }), linux), "systemd");
  assert.equal(await detectInit(fakeFs({ exists: ["/run/openrc"] }), linux), "openrc");
  assert.equal(await detectInit(fakeFs({}), linux), "sysv");
  assert.equal(await detectInit(fakeFs({}), fakeHost(0, {}, "freebsd")), "freebsd");
});

Deno.test("tools: the init system's own program is required", async () => {
  const fs = fakeFs({
    executables: ["/usr/bin/ps", "/usr/bin/kill", "/usr/sbin/service"],
  });
  assert.deepEqual((await findTools(fs, "sysv")).missing, []);
  assert.deepEqual((await findTools(fs, "systemd")).missing, ["systemctl"]);
  assert.deepEqual((await findTools(fs, "openrc")).missing, ["rc-service"]);
  const bsd = fakeFs({
    executables: ["/bin/ps", "/bin/kill", "/usr/sbin/service"],
  });
  const found = await findTools(bsd, "freebsd");
  assert.deepEqual(found.missing, []);
  assert.equal(found.tools.ps, "/bin/ps");
});

Deno.test("php-fpm services of every family are found", async () => {
  const fs = fakeFs({
    dirs: {
      "/etc/init.d": ["php7.4-fpm", "nginx", "php8.2-fpm"],
      "/usr/lib/systemd/system": ["php-fpm.service", "php-fpm@.service"],
      "/usr/local/etc/rc.d": ["php_fpm", "nginx"],
    },
  });
  assert.deepEqual(await findFpmServices(fs), ["php-fpm", "php7.4-fpm", "php8.2-fpm", "php_fpm"]);
});

Deno.test("process names from service names", () => {
  assert.equal(processNameFor("php8.2-fpm"), "php-fpm8.2");
  assert.equal(processNameFor("php7.4-fpm"), "php-fpm7.4");
  assert.equal(processNameFor("php-fpm"), "php-fpm");
  assert.equal(processNameFor("php5-fpm"), "php5-fpm");
  assert.equal(processNameFor("php_fpm"), "php-fpm");
  assert.equal(processNameFor("php8.2-cgi"), "php-cgi8.2");
});

Deno.test("pid files where the usual packages keep them", async () => {
  const { defaultPidFile } = await import("../../src/fpm/config.ts");
  assert.equal(defaultPidFile("php8.2-fpm"), "/run/php/php8.2-fpm.pid");
  assert.equal(defaultPidFile("php-fpm"), "/run/php-fpm/php-fpm.pid");
  assert.equal(defaultPidFile("php_fpm"), "/var/run/php-fpm.pid");
  assert.equal(defaultPidFile("custom-pool"), null);
});
