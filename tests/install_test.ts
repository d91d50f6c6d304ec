/**
 * scripts/install.sh in a throwaway root: each schedule kind, idempotence, dry runs, a kept
 * configuration, and an uninstall that leaves nothing behind.
 */
import assert from "node:assert/strict";
import { ROOT, runCli, runDir } from "./support/cli.ts";

const decoder = new TextDecoder();

async function install(root: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command("/bin/sh", {
    args: [`${ROOT}/scripts/install.sh`, "--root", root, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    clearEnv: true,
  }).output();
  return { code: r.code, out: decoder.decode(r.stdout) + decoder.decode(r.stderr) };
}

/** Every file below `root`, relative, sorted; folders are listed when empty. */
async function tree(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) {
      const inner = await tree(root, path);
      out.push(...(inner.length ? inner : [`${path.slice(root.length)}/`]));
    } else out.push(path.slice(root.length));
  }
  return out.sort();
}

async function withRoot(fn: (root: string, binary: string) => Promise<void>) {
  // below the state root: check-config reads the installed configuration with the shipped permissions
  const work = await runDir("install-");
  const dir = work.path;
  const root = `${dir}/root`;
  await Deno.mkdir(root);
  await Deno.writeTextFile(`${dir}/php-relaunch`, "#!/bin/sh\necho the binary\n");
  try {
    await fn(root, `${dir}/php-relaunch`);
  } finally {
    await work.remove();
  }
}

const COMMON = ["--mail-to", "ops@example.com,dev@example.com", "--service", "php8.2-fpm"];

const TMPFILES = "/etc/tmpfiles.d/php-relaunch.conf";
const SCHEDULES: Record<string, string[]> = {
  cron: ["/etc/cron.d/php-relaunch", TMPFILES],
  mcron: ["/etc/cron.d/php-relaunch", "/root/.cron/job.guile", TMPFILES],
  "mcron+cron": ["/etc/cron.d/php-relaunch", "/root/.cron/job.guile", TMPFILES],
  systemd: ["/etc/systemd/system/php-relaunch.service"],
  none: [],
};

for (const [schedule, files] of Object.entries(SCHEDULES)) {
  Deno.test(`install --schedule ${schedule}: its files, then nothing on a second run, and nothing left after --uninstall`, async () => {
    await withRoot(async (root, binary) => {
      const first = await install(root, "--binary", binary, "--schedule", schedule, ...COMMON);
      assert.equal(first.code, 0, first.out);
      assert.deepEqual(
        await tree(root),
        [
          "/etc/logrotate.d/php-relaunch",
          "/etc/php-relaunch/config.toml",
          "/usr/local/bin/php-relaunch",
          "/var/lib/php-relaunch/install.manifest",
          ...files,
        ].sort(),
      );
      const bin = await Deno.stat(`${root}/usr/local/bin/php-relaunch`);
      assert.equal((bin.mode ?? 0) & 0o777, 0o755);
      assert.equal(
        await Deno.readTextFile(`${root}/usr/local/bin/php-relaunch`),
        await Deno.readTextFile(binary),
      );
      const before = await Promise.all((await tree(root)).map((f) => Deno.readTextFile(root + f)));
      const second = await install(root, "--binary", binary, "--schedule", schedule, ...COMMON);
      assert.equal(second.code, 0);
      assert.match(second.out, /nothing to change/);
      const after = await Promise.all((await tree(root)).map((f) => Deno.readTextFile(root + f)));
      assert.deepEqual(after, before, "idempotent");
      const gone = await install(root, "--uninstall");
      assert.equal(gone.code, 0, gone.out);
      assert.deepEqual(await tree(root), [], "uninstall leaves nothing");
    });
  });
}

Deno.test("install: the schedules run php-relaunch with the installed configuration, every 10 s under mcron", async () => {
  await withRoot(async (root, binary) => {
    await install(root, "--binary", binary, "--schedule", "mcron+cron", ...COMMON);
    const cron = await Deno.readTextFile(`${root}/etc/cron.d/php-relaunch`);
    assert.match(cron, /^@reboot root mcron -d$/m);
    // root's lock folder, made at boot for root alone: the one the program uses
    assert.match(
      await Deno.readTextFile(`${root}${TMPFILES}`),
      /^d \/run\/php-relaunch 0700 root root -$/m,
    );
    assert.match(
      cron,
      /^\* \* \* \* \* root pgrep -x mcron >\/dev\/null \|\| \/usr\/local\/bin\/php-relaunch --config \/etc\/php-relaunch\/config\.toml >\/dev\/null 2>&1$/m,
    );
    const schedule = await new Deno.Command("mcron", {
      args: ["--schedule=2", `${root}/root/.cron/job.guile`],
      stdout: "piped",
      stderr: "null",
    }).output();
    const times = decoder.decode(schedule.stdout);
    assert.match(times, /php-relaunch --config \/etc\/php-relaunch\/config\.toml --run-for 10/);
    const seconds = [...times.matchAll(/\d\d:\d\d:(\d\d)/g)].map((m) => Number(m[1]));
    assert.ok(seconds.length >= 2 && seconds.every((s) => s % 10 === 0), times);
  });
});

Deno.test("install: the written configuration is valid; an existing one is never overwritten", async () => {
  await withRoot(async (root, binary) => {
    await install(
      root,
      "--binary",
      binary,
      "--url",
      "http://127.0.0.1:8889/php-heartbeat.php",
      "--timeout",
      "3",
      ...COMMON,
    );
    const config = `${root}/etc/php-relaunch/config.toml`;
    const check = await runCli(["check-config", "--config", config]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(
      check.stdout,
      /heartbeat +http:\/\/127\.0\.0\.1:8889\/php-heartbeat\.php \(timeout 3 s/,
    );
    assert.match(check.stdout, /mail to +ops@example\.com, dev@example\.com/);
    // the operator's own configuration stays, and stays after an uninstall
    await Deno.writeTextFile(config, "# mine\n");
    const again = await install(root, "--binary", binary, "--timeout", "9");
    assert.match(
      again.out,
      /keeping \/etc\/php-relaunch\/config\.toml: it exists/,
    );
    assert.equal(await Deno.readTextFile(config), "# mine\n");
    await install(root, "--uninstall");
    assert.deepEqual(await tree(root), ["/etc/php-relaunch/config.toml"]);
  });
});

Deno.test("install --dry-run says what it would do and changes nothing", async () => {
  await withRoot(async (root, binary) => {
    const dry = await install(root, "--binary", binary, "--dry-run", "--schedule", "systemd");
    assert.equal(dry.code, 0, dry.out);
    assert.match(dry.out, /would install \/usr\/local\/bin\/php-relaunch/);
    assert.match(dry.out, /would install \/etc\/systemd\/system\/php-relaunch\.service/);
    assert.deepEqual(await tree(root), []);
    await install(root, "--binary", binary);
    const dryGone = await install(root, "--uninstall", "--dry-run");
    assert.match(dryGone.out, /would remove \/etc\/cron\.d\/php-relaunch/);
    assert.equal((await tree(root)).length, 6, "still installed");
  });
});

Deno.test("install: bad flags exit 2 with one line and touch nothing", async () => {
  await withRoot(async (root, binary) => {
    for (
      const [args, message] of [
        [["--schedule", "launchd"], /unknown schedule "launchd"/],
        [["--frobnicate"], /unknown option "--frobnicate"/],
        [["--timeout", "five"], /--timeout "five" is not a whole number/],
        [["--mail-to", "a@b.c'; rm -rf /"], /refusing .*quotes/],
        [["--binary", `${root}/missing`], /no binary at/],
      ] as const
    ) {
      const r = await install(
        root,
        ...(args[0] === "--binary" ? [] : ["--binary", binary]),
        ...args,
      );
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, message);
      assert.deepEqual(await tree(root), []);
    }
  });
});

Deno.test("the logrotate file is valid for logrotate", {
  ignore: !(await Deno.stat("/usr/sbin/logrotate").then(() => true, () => false)),
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await new Deno.Command("/usr/sbin/logrotate", {
      args: ["--debug", "--state", `${dir}/state`, `${ROOT}/packaging/php-relaunch.logrotate`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = decoder.decode(r.stdout) + decoder.decode(r.stderr);
    assert.equal(r.code, 0, out);
    assert.match(out, /considering log \/var\/log\/php-relaunch\.log/);
    assert.doesNotMatch(out, /error/i);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
