/** `discover`: every php-fpm and its pools, found without configuration, and a config for them. */
import assert from "node:assert/strict";
import { run } from "../../src/cli.ts";
import { parseConfigFile } from "../../src/config/file.ts";
import { fcgiUrl } from "../../src/fpm/discovery.ts";
import { debianFs, fakeFs, fakeHost, testDeps } from "../support/fakes.ts";

/**
 * Two PHP versions: 8.2 with a site pool that has a ping and a status listener, a shop pool with
 * a ping and a status page on its own socket, and www with neither; 7.4 bare.
 */
function host() {
  return testDeps({
    fs: debianFs({
      dirs: {
        "/etc/init.d": ["nginx", "php7.4-fpm", "php8.2-fpm"],
        "/etc/php/8.2/fpm/pool.d": ["site.conf", "www.conf", "zshop.conf"],
      },
      executables: ["/usr/sbin/php-fpm7.4"],
      files: {
        "/etc/php/8.2/fpm/php-fpm.conf":
          "[global]\npid = /run/php/php8.2-fpm.pid\ninclude=/etc/php/8.2/fpm/pool.d/*.conf\n",
        "/etc/php/8.2/fpm/pool.d/www.conf":
          "[www]\nlisten = /run/php/php8.2-fpm.sock\npm = dynamic\npm.max_children = 5\n",
        "/etc/php/8.2/fpm/pool.d/site.conf": [
          "[site]",
          "listen = 127.0.0.1:9010",
          "pm = static",
          "pm.max_children = 8",
          "ping.path = /ping",
          "pm.status_path = /status",
          "pm.status_listen = 127.0.0.1:9011",
          "slowlog = /var/log/site.slow.log",
          "",
        ].join("\n"),
        "/etc/php/8.2/fpm/pool.d/zshop.conf":
          "[shop]\nlisten = /run/php/shop.sock\nping.path = /ping\npm.status_path = /status\n",
      },
    }),
  });
}

Deno.test("discover: each service with its processes, pid file and pools, as a table", async () => {
  const deps = host();
  assert.equal(await run(["discover"], deps), 0);
  const text = deps.out.join("");
  assert.match(
    text,
    /^php7\.4-fpm: processes php-fpm7\.4, pid file \/run\/php\/php7\.4-fpm\.pid, config \/etc\/php\/7\.4\/fpm\/php-fpm\.conf\n {2}no pool read/,
  );
  assert.match(
    text,
    /\nphp8\.2-fpm: processes php-fpm8\.2, pid file \/run\/php\/php8\.2-fpm\.pid, config \/etc\/php\/8\.2\/fpm\/php-fpm\.conf\n/,
  );
  assert.match(
    text,
    /\n {2}site +127\.0\.0\.1:9010 +static\/8 +\/ping +\/status +127\.0\.0\.1:9011 +\/var\/log\/site\.slow\.log\n/,
  );
  assert.match(text, /\n {2}www +\/run\/php\/php8\.2-fpm\.sock +dynamic\/5 +- +- +- +-\n/);
});

Deno.test("discover --config: a valid configuration, one target per service, with advice", async () => {
  const deps = host();
  assert.equal(await run(["discover", "--config"], deps), 0);
  const toml = deps.out.join("");
  const file = parseConfigFile("discovered.toml", toml);
  assert.ok(!Array.isArray(file), Array.isArray(file) ? file.join("\n") : "");
  assert.deepEqual(file.target.map((t) => t.name), ["php7.4-fpm", "php8.2-fpm"]);
  const php82 = file.target[1]!;
  assert.equal(php82.url, "fcgi://127.0.0.1:9010/ping", "the pool with a ping, over FastCGI");
  assert.equal(php82.status_url, "fcgi://127.0.0.1:9011/status", "on its own listener");
  assert.equal(php82.pid_file, "/run/php/php8.2-fpm.pid");
  assert.equal(php82.fpm_config, "/etc/php/8.2/fpm/php-fpm.conf");
  assert.equal(php82.pool_name, "site", "the heartbeat's pool, by name");
  assert.deepEqual(php82.pool, [{
    name: "shop",
    url: "fcgi+unix:///run/php/shop.sock/ping",
    "status_url": "fcgi+unix:///run/php/shop.sock/status",
  }], "the other pool with a ping, probed on its own with its own status page");
  assert.equal(file.target[0]!.url, "http://127.0.0.1:8889/php-heartbeat.php", "no ping: nginx");
  assert.match(
    toml,
    /\n# add "ping\.path = \/ping" to \[www\] in \/etc\/php\/8\.2\/fpm\/pool\.d\/www\.conf: .*, and the pool then watched on its own beside site\n/,
  );
  assert.match(
    toml,
    /\n# add "pm\.status_path = \/status" and "pm\.status_listen = 127\.0\.0\.1:909" to \[www\] in \/etc\/php\/8\.2\/fpm\/pool\.d\/www\.conf/,
  );
  assert.doesNotMatch(toml, /to \[site\]/, "the site pool lacks nothing");
  assert.match(toml, /\n\[\[target\.pool\]\]\nname = "shop"\n/);
  assert.match(
    toml,
    /\n# add "pm\.status_listen = 127\.0\.0\.1:910" to \[shop\] in \/etc\/php\/8\.2\/fpm\/pool\.d\/zshop\.conf/,
    "a port of its own: two pools cannot share a status listener",
  );
  // the same with --format toml, and a bad format or argument is one line
  const again = host();
  assert.equal(await run(["discover", "--format", "toml"], again), 0);
  assert.equal(
    again.out.join("").replace(/ at \S+Z\n/, ""),
    toml.replace(/ at \S+Z\n/, ""),
  );
  const bad = host();
  assert.equal(await run(["discover", "--format", "yaml"], bad), 2);
  assert.deepEqual(bad.err, [
    'php-relaunch: Cannot use discover format "yaml": expected text or toml\n',
  ]);
  assert.equal(await run(["discover", "x"], bad), 2);
});

Deno.test("discover: no php-fpm at all says so and exits 3", async () => {
  const deps = testDeps({ fs: debianFs({ dirs: { "/etc/init.d": ["nginx"] } }) });
  assert.equal(await run(["discover"], deps), 3);
  assert.match(deps.out.join(""), /^no php-fpm service found/);
});

Deno.test("fcgiUrl: a pool's listen and a path as a FastCGI URL", () => {
  assert.equal(fcgiUrl("/run/php/a.sock", "/ping"), "fcgi+unix:///run/php/a.sock/ping");
  assert.equal(fcgiUrl("9000", "/ping"), "fcgi://127.0.0.1:9000/ping");
  assert.equal(fcgiUrl("0.0.0.0:9000", "/ping"), "fcgi://127.0.0.1:9000/ping");
  assert.equal(fcgiUrl("[::1]:9000", "/s"), "fcgi://[::1]:9000/s");
  assert.equal(fcgiUrl("/run/php/a.sock", null), null);
  assert.equal(fcgiUrl(null, "/ping"), null);
  assert.equal(fcgiUrl("/run/php/a.sock", "ping"), null, "php-fpm's paths begin with /");
});

Deno.test("discover: RHEL's php-fpm, its pools in /etc/php-fpm.d/, each with a ping probed on its own", async () => {
  const deps = testDeps({
    fs: fakeFs({
      dirs: {
        "/usr/lib/systemd/system": ["php-fpm.service", "nginx.service"],
        "/etc/php-fpm.d": ["www.conf", "shop.conf"],
      },
      files: {
        // RHEL 9's php-fpm.conf: its pid file and the include of the pool folder
        "/etc/php-fpm.conf":
          "[global]\npid = /run/php-fpm/php-fpm.pid\nerror_log = /var/log/php-fpm/error.log\ninclude=/etc/php-fpm.d/*.conf\n",
        "/etc/php-fpm.d/www.conf":
          "[www]\nuser = apache\nlisten = /run/php-fpm/www.sock\npm = dynamic\npm.max_children = 50\nping.path = /ping\n",
        "/etc/php-fpm.d/shop.conf":
          "[shop]\nlisten = 127.0.0.1:9002\nping.path = /ping\npm.status_path = /status\n",
      },
    }),
  });
  assert.equal(await run(["discover"], deps), 0);
  const text = deps.out.join("");
  assert.match(
    text,
    /^php-fpm: processes php-fpm, pid file \/run\/php-fpm\/php-fpm\.pid, config \/etc\/php-fpm\.conf\n/,
  );
  assert.match(text, /\n {2}shop +127\.0\.0\.1:9002 +-\/- +\/ping +\/status/);
  assert.match(text, /\n {2}www +\/run\/php-fpm\/www\.sock +dynamic\/50 +\/ping/);
  deps.out.length = 0;
  assert.equal(await run(["discover", "--config"], deps), 0);
  const file = parseConfigFile("rhel.toml", deps.out.join(""));
  assert.ok(!Array.isArray(file), Array.isArray(file) ? file.join("\n") : "");
  const t = file.target[0]!;
  assert.equal(t.service, "php-fpm");
  assert.equal(t.process_name, "php-fpm");
  assert.equal(t.pid_file, "/run/php-fpm/php-fpm.pid");
  assert.equal(t.pool_name, "shop", "the first pool read with a ping (files in name order)");
  assert.equal(t.url, "fcgi://127.0.0.1:9002/ping");
  assert.equal(t.status_url, "fcgi://127.0.0.1:9002/status");
  assert.deepEqual(t.pool, [{ name: "www", url: "fcgi+unix:///run/php-fpm/www.sock/ping" }]);
});

Deno.test("discover: FreeBSD's php_fpm, its pools in /usr/local/etc/php-fpm.d/", async () => {
  const deps = testDeps({
    fs: fakeFs({
      dirs: {
        "/usr/local/etc/rc.d": ["nginx", "php_fpm"],
        "/usr/local/etc/php-fpm.d": ["www.conf"],
      },
      files: {
        "/usr/local/etc/php-fpm.conf": "[global]\ninclude=/usr/local/etc/php-fpm.d/*.conf\n",
        "/usr/local/etc/php-fpm.d/www.conf":
          "[www]\nlisten = 127.0.0.1:9000\npm = dynamic\npm.max_children = 5\n",
      },
    }),
    host: fakeHost(0, {}, "freebsd"),
  });
  assert.equal(await run(["discover"], deps), 0);
  const text = deps.out.join("");
  assert.match(
    text,
    /^php_fpm: processes php-fpm, pid file \/var\/run\/php-fpm\.pid, config \/usr\/local\/etc\/php-fpm\.conf\n/,
  );
  assert.match(text, /\n {2}www +127\.0\.0\.1:9000 +dynamic\/5 +- +- +- +-\n/);
  deps.out.length = 0;
  assert.equal(await run(["discover", "--config"], deps), 0);
  const toml = deps.out.join("");
  assert.match(
    toml,
    /# add "ping\.path = \/ping" to \[www\] in \/usr\/local\/etc\/php-fpm\.d\/www\.conf/,
  );
  const file = parseConfigFile("freebsd.toml", toml);
  assert.ok(!Array.isArray(file), Array.isArray(file) ? file.join("\n") : "");
  assert.equal(file.target[0]?.service, "php_fpm");
  assert.equal(file.target[0]?.url, "http://127.0.0.1:8889/php-heartbeat.php", "no ping: nginx");
});
