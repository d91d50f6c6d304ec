/** `discover` says whether OPcache can be watched: where its status script is missing, or that it is in place. */
import assert from "node:assert/strict";
import { run } from "../../src/cli.ts";
import { debianFs, testDeps } from "../support/fakes.ts";
import { SCRIPT_INSTALLED } from "../support/opcache.ts";

const FPM = {
  "/etc/php/8.2/fpm/php-fpm.conf":
    "[global]\npid = /run/php/php8.2-fpm.pid\n[www]\nlisten = /run/php/php8.2-fpm.sock\n",
};

Deno.test("discover: a missing OPcache status script is named, with how to install it", async () => {
  const deps = testDeps({ fs: debianFs({ files: FPM }) });
  assert.equal(await run(["discover"], deps), 0);
  assert.match(
    deps.out.join(""),
    /\nOPcache: not watched: \/usr\/local\/share\/php-relaunch\/php-relaunch-opcache\.php is missing: install it with sh scripts\/samples\.sh install\n/,
  );
  const toml = testDeps({ fs: debianFs({ files: FPM }) });
  assert.equal(await run(["discover", "--config"], toml), 0);
  assert.match(
    toml.out.join(""),
    /\n# OPcache: not watched: .* is missing/,
    "a comment in the file",
  );
});

Deno.test("discover: an installed script is said to be in place; one others may write is refused", async () => {
  const deps = testDeps({
    fs: debianFs({ ...SCRIPT_INSTALLED, files: { ...FPM, ...SCRIPT_INSTALLED.files } }),
  });
  assert.equal(await run(["discover"], deps), 0);
  assert.match(
    deps.out.join(""),
    /\nOPcache: status script \/usr\/local\/share\/php-relaunch\/php-relaunch-opcache\.php in place/,
  );
  const open = testDeps({
    fs: debianFs({
      ...SCRIPT_INSTALLED,
      files: { ...FPM, ...SCRIPT_INSTALLED.files },
      modes: { "/usr/local/share/php-relaunch/php-relaunch-opcache.php": 0o666 },
    }),
  });
  assert.equal(await run(["discover"], open), 0);
  assert.match(
    open.out.join(""),
    /OPcache: not watched: .* is not root's alone \(expected owner root, mode 0644\)/,
  );
});

Deno.test("check-config: says how OPcache is watched, or that it is not", async () => {
  const config = (extra: string) =>
    `[defaults]\n${extra}\n[[target]]\nname = "w"\nurl = "fcgi+unix:///run/php/php8.2-fpm.sock/ping"\nservice = "php8.2-fpm"\n`;
  const on = testDeps({
    fs: debianFs({ files: { ...FPM, "/etc/php-relaunch/config.toml": config("") } }),
  });
  assert.equal(await run(["check-config", "--config", "/etc/php-relaunch/config.toml"], on), 0);
  assert.match(
    on.out.join(""),
    /\n {2}OPcache {6}\/usr\/local\/share\/php-relaunch\/php-relaunch-opcache\.php asked every 60 s when installed; warn when the hit rate falls 10 points\n/,
  );
  const off = testDeps({
    fs: debianFs({
      files: { ...FPM, "/etc/php-relaunch/config.toml": config("opcache_interval = 0") },
    }),
  });
  assert.equal(await run(["check-config", "--config", "/etc/php-relaunch/config.toml"], off), 0);
  assert.match(off.out.join(""), /\n {2}OPcache {6}not watched \(opcache_interval = 0\)\n/);
});
