/**
 * OPcache running out, on the real stack: a php-fpm8.2 master of its own (service
 * php8.2-fpm-op) started with an 8 MB OPcache (`-d opcache.memory_consumption=8` on its command
 * line: a pool's php_admin_value cannot resize the master's memory), filled by generated scripts
 * requested over FastCGI until OPcache says it is full. A cron run then warns, by mail, naming
 * the setting to raise, and writes the gauges; `report` names it too. The samples install puts the
 * status script in place (root's, 0644, folder 0755), and is undone when it was not there before.
 */
import assert from "node:assert/strict";
import parse from "parse-prometheus-text-format";
import { directFcgiGet } from "../../src/probe/fcgi.ts";
import { OPCACHE_SCRIPT, parseOpcache } from "../../src/fpm/opcache.ts";
import { ROOT, runCli, runDir } from "../support/cli.ts";
import { ExtraPool, FPM_PROCESS, must, sh, SmtpSink } from "./stack.ts";

const SCRIPTS = "/var/www/php-relaunch-test-op";
const HEARTBEAT_PAGE = "/var/www/php-heartbeat/php-heartbeat.php";
/** The most generated scripts requested: about 120 fill 7.5 of 8 MB (seen on PHP 8.2). */
const MAX_SCRIPTS = 600;

const pool = new ExtraPool({
  suffix: "op",
  nginxPort: null,
  poolLines: ["pm = static", "pm.max_children = 2", "ping.path = /ping"],
  daemonArgs: [
    "-d opcache.memory_consumption=8",
    // taken from those 8 MB: the default 8 MB buffer leaves none ("Insufficient shared memory
    // for interned strings buffer", and no master)
    "-d opcache.interned_strings_buffer=2",
    // room for every script's key: memory runs out first
    "-d opcache.max_accelerated_files=4000",
  ],
});

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

/** One request of `path` to the pool over FastCGI. */
function ask(path: string) {
  return directFcgiGet(
    { address: { transport: "unix", path: pool.socket }, path, query: "" },
    AbortSignal.timeout(5000),
  );
}

/** A PHP script of about 60 KiB of compiled code, unlike every other. */
function script(n: number): string {
  const fns = Array.from(
    { length: 60 },
    (_, f) =>
      `function f${n}_${f}($a) { $x = [1, 2, 3, 's${n}_${f}']; foreach ($x as $k => $v) { if ($v === $a) return $k * ${f} + strlen('abcdefghij${n}'); } return $a . 'q${f}'; }`,
  );
  return `<?php\n${fns.join("\n")}\necho 'ok';\n`;
}

/** OPcache's state as the status script tells it (parsed as php-relaunch parses it). */
async function opcacheNow() {
  const answer = await ask(OPCACHE_SCRIPT);
  assert.equal(answer.status, 200, answer.body);
  const read = parseOpcache(answer.body);
  assert.ok(typeof read !== "string" && read.on, JSON.stringify(read));
  return read.status;
}

Deno.test({
  name: "e2e: a full OPcache gives one warning naming opcache.memory_consumption, and its gauges",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const hadSamples = await exists(HEARTBEAT_PAGE);
    const hadScript = await exists(OPCACHE_SCRIPT);
    const dir = await runDir("opcache-");
    const sink = await SmtpSink.start();
    try {
      await t.step("the samples install puts the status script in place, root's", async () => {
        if (!hadScript) await must(`${ROOT}/scripts/samples.sh`, ["install"]);
        const file = await Deno.lstat(OPCACHE_SCRIPT);
        const folder = await Deno.lstat("/usr/local/share/php-relaunch");
        assert.ok(file.isFile && folder.isDirectory);
        assert.equal(file.uid, 0);
        assert.equal(file.mode! & 0o7777, 0o644);
        assert.equal(folder.uid, 0);
        assert.equal(folder.mode! & 0o7777, 0o755);
        assert.equal(
          await Deno.readTextFile(OPCACHE_SCRIPT),
          await Deno.readTextFile(`${ROOT}/nginx/php-relaunch-opcache.php`),
        );
        assert.equal((await sh(`${ROOT}/scripts/samples.sh`, ["status"])).code, 0);
      });

      await pool.create();
      await Deno.mkdir(SCRIPTS, { recursive: true, mode: 0o755 });

      await t.step("the master's OPcache is 8 MB, and generated scripts fill it", async () => {
        const fresh = await opcacheNow();
        assert.equal(fresh.ini.memoryConsumptionMb, 8);
        assert.ok(fresh.usedBytes + fresh.freeBytes <= 8 * 2 ** 20, "the master's own 8 MB");
        assert.equal(fresh.cacheFull, false);
        // OPcache leaves alone files changed within opcache.file_update_protection (2 s)
        const past = new Date(Date.now() - 3_600_000);
        let full = false;
        for (let n = 0; n < MAX_SCRIPTS && !full; n += 50) {
          for (let i = n; i < n + 50; i++) {
            const path = `${SCRIPTS}/s${i}.php`;
            await Deno.writeTextFile(path, script(i), { mode: 0o644 });
            await Deno.utime(path, past, past);
          }
          for (let i = n; i < n + 50; i++) {
            const answer = await ask(`${SCRIPTS}/s${i}.php`);
            assert.equal(answer.body, "ok");
          }
          full = (await opcacheNow()).cacheFull;
        }
        assert.ok(full, `OPcache full after at most ${MAX_SCRIPTS} scripts`);
      });

      await t.step(
        "a cron run warns once, by mail, naming the setting, and writes the gauges",
        async () => {
          const config = `${dir.path}/config.toml`;
          await Deno.writeTextFile(
            config,
            [
              "[defaults]",
              "interval = 1",
              "timeout = 2",
              'mail_to = ["ops@example.com"]',
              `[mail]\nsmtp_host = "127.0.0.1"\nsmtp_port = ${sink.port}\nfrom = "php-relaunch@example.org"`,
              `[state]\ndir = "${dir.path}/state"\nlock_dir = "${dir.path}"`,
              "[[target]]",
              'name = "op"',
              `url = "fcgi+unix://${pool.socket}/ping"`,
              `service = "${pool.service}"`,
              `process_name = "${FPM_PROCESS}"`,
              `pid_file = "${pool.pidFile}"`,
              `fpm_config = "${pool.files.conf}"`,
              "",
            ].join("\n"),
          );
          const r = await runCli([
            "--config",
            config,
            "--run-for",
            "6",
            "--metrics-file",
            `${dir.path}/op.prom`,
            "--log-file",
            `${dir.path}/op.log`,
          ]);
          assert.equal(r.code, 0, r.stderr);
          const log = await Deno.readTextFile(`${dir.path}/op.log`);
          const lines = log.split("\n").filter((l) =>
            /PHP OPcache warning: OPcache is full/.test(l)
          );
          assert.equal(lines.length, 1, log);
          assert.match(
            lines[0]!,
            /PHP OPcache warning: OPcache is full \([\d.]+ MB used, [\d.]+ MB free, [\d.]+ MB wasted of [\d.]+ MB, \d+ scripts\): .*; raise opcache\.memory_consumption\./,
          );
          const mails = await sink.messages();
          const warning = mails.filter((m) =>
            /PHP OPcache warning/.test(m.subject) && /OPcache is full/.test(m.body)
          );
          assert.equal(warning.length, 1, mails.map((m) => m.subject).join(", "));
          // the sink keeps the mail as sent: quoted-printable, soft line breaks and =3D for "="
          const body = warning[0]!.body.replace(/=\r?\n/g, "").replaceAll("=3D", "=");
          assert.match(
            body,
            /Setting to raise: opcache\.memory_consumption: raise opcache\.memory_consumption from 8 to 16/,
          );
          assert.match(body, /Nothing was restarted/);
          const families = parse(await Deno.readTextFile(`${dir.path}/op.prom`)) as {
            name: string;
            metrics: { value?: string; labels?: Record<string, string> }[];
          }[];
          const gauge = (name: string, labels: Record<string, string> = {}) => {
            const family = families.find((f) => f.name === name);
            const metric = family?.metrics.find((m) =>
              Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)
            );
            return metric === undefined ? null : Number(metric.value);
          };
          assert.equal(gauge("php_relaunch_opcache_cache_full", { target: "op" }), 1);
          const used = gauge("php_relaunch_opcache_memory_bytes", { target: "op", state: "used" });
          const free = gauge("php_relaunch_opcache_memory_bytes", { target: "op", state: "free" });
          assert.ok(used !== null && used > 6 * 2 ** 20, `used ${used}`);
          assert.ok(free !== null && free < 2 ** 20, `free ${free}`);
          const ratio = gauge("php_relaunch_opcache_hit_ratio", { target: "op" });
          assert.ok(ratio !== null && ratio >= 0 && ratio <= 1);
          assert.equal(gauge("php_relaunch_opcache_oom_restarts_total", { target: "op" }), 0);
        },
      );

      await t.step("report names the setting to raise, without any incident", async () => {
        const r = await runCli(["report", "--state-dir", `${dir.path}/state`]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(
          r.stdout,
          /- opcache\.memory_consumption: op at .*OPcache is full.*raise opcache\.memory_consumption from 8 to 16/,
        );
      });
    } finally {
      await pool.remove();
      await Deno.remove(SCRIPTS, { recursive: true }).catch(() => {});
      await sink.stop();
      await dir.remove();
      // the host as it was: the samples removed if they were not there, or the script alone
      if (!hadSamples) await sh(`${ROOT}/scripts/samples.sh`, ["uninstall"]);
      else if (!hadScript) {
        await Deno.remove(OPCACHE_SCRIPT).catch(() => {});
        await Deno.remove("/usr/local/share/php-relaunch").catch(() => {});
      }
    }
  },
});
