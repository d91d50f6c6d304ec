/**
 * `pause` and `resume` as an operator types them: the file they leave, what they say, the alerts
 * they send, and the bad inputs they refuse in one line.
 */
import assert from "node:assert/strict";
import { runCli, runDir, withServer } from "../support/cli.ts";

async function withSetup(
  fn: (
    cli: (...args: string[]) => ReturnType<typeof runCli>,
    dir: string,
    hooks: string[],
  ) => Promise<void>,
) {
  const dir = await runDir("pause-");
  const hooks: string[] = [];
  try {
    await withServer(async (request) => {
      if (request.method === "POST") hooks.push(await request.text());
      return new Response("ok");
    }, async (base) => {
      await Deno.writeTextFile(
        `${dir.path}/config.toml`,
        [
          "[defaults]",
          'pause_max = "1h"',
          "[state]",
          `dir = "${dir.path}/state"`,
          `lock_dir = "${dir.path}/locks"`,
          "[webhook]",
          `url = "${base}/hook"`,
          "[[target]]",
          'name = "web"',
          `url = "${base}/hb"`,
          'service = "php8.2-fpm"',
          "[[target]]",
          'name = "api"',
          `url = "${base}/hb2"`,
          // a second installed service: one target per service, and nothing is restarted here
          'service = "nginx"',
          'process_name = "nginx"',
          'pause_default = "5m"',
          "",
        ].join("\n"),
      );
      const cli = (...args: string[]) =>
        runCli([...args, "--config", `${dir.path}/config.toml`, "--log-file", `${dir.path}/log`], {
          env: { SUDO_USER: "alice" },
        });
      await fn(cli, dir.path, hooks);
    });
  } finally {
    await dir.remove();
  }
}

Deno.test("pause: a 0600 file, one line said, one alert with who and why; resume undoes it", async () => {
  await withSetup(async (cli, dir, hooks) => {
    const paused = await cli("pause", "web", "--for", "10m", "--reason", "deploy 42");
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(
      paused.stdout,
      /^paused web until \d{4}-\d\d-\d\dT[\d:.]+Z \(10 min\): deploy 42$/,
    );
    const file = JSON.parse(await Deno.readTextFile(`${dir}/state/web.pause`));
    assert.equal(file.by, "alice");
    assert.equal(file.reason, "deploy 42");
    assert.ok(Math.abs(file.until - file.at - 600_000) < 1000);
    assert.equal((await Deno.stat(`${dir}/state/web.pause`)).mode! & 0o777, 0o600);
    assert.equal(hooks.length, 1);
    const hook = JSON.parse(hooks[0]!);
    assert.match(hook.subject, / PHP watchdog paused$/);
    assert.match(
      hook.line,
      /Paused by alice until .* \(deploy 42\): probes go on, restarts and alerts are held\./,
    );
    assert.match(await Deno.readTextFile(`${dir}/log`), /Paused by alice/);

    const status = await cli("status");
    assert.match(
      status.stdout,
      /^web: not probed yet\n {2}paused {7}until .* by alice: deploy 42$/m,
    );
    assert.doesNotMatch(status.stdout, /^api:.*\n {2}paused/m);

    const resumed = await cli("resume", "web", "--reason", "deployed");
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(resumed.stdout, "resumed web");
    await assert.rejects(Deno.stat(`${dir}/state/web.pause`), Deno.errors.NotFound);
    assert.equal(hooks.length, 2);
    assert.match(
      JSON.parse(hooks[1]!).line,
      /Resumed by alice \(deployed\): watching and restarting again\./,
    );
    assert.match(JSON.parse(hooks[1]!).details.join("\n"), /Paused by alice at .*: deploy 42/);
    const again = await cli("resume", "web");
    assert.equal(again.stdout, "web was not paused");
    assert.equal(hooks.length, 2, "nothing to tell");
  });
});

Deno.test("pause: without a target, every target, each for its own pause_default", async () => {
  await withSetup(async (cli, dir) => {
    const r = await cli("pause");
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^paused web until .* \(30 min\): no reason given\npaused api until .* \(5 min\): no reason given$/,
    );
    for (const name of ["web", "api"]) await Deno.stat(`${dir}/state/${name}.pause`);
  });
});

Deno.test("pause: bad input is one line and exit 2, and pauses nothing", async () => {
  await withSetup(async (cli, dir, hooks) => {
    const cases: [string[], RegExp][] = [
      [
        ["pause", "--for", "2h"],
        /^php-relaunch: Cannot pause web for 120 min: at most 60 min \(pause_max\)$/,
      ],
      [
        ["pause", "web", "--for", "soon"],
        /^php-relaunch: Cannot pause for "soon": expected a duration such as 90s, 30m or 2h, at most 30d$/,
      ],
      [
        ["pause", "nosuch"],
        /^php-relaunch: No target "nosuch" in .*config\.toml: expected one of web, api$/,
      ],
      [
        ["pause", "web", "--reason", "two\nlines"],
        /^php-relaunch: Cannot use the reason: expected one line of 1 to 200 characters$/,
      ],
      [
        ["pause", "web", "api"],
        /^php-relaunch: Too many arguments: php-relaunch pause \[target\]$/,
      ],
      [["status", "--for", "1m"], /^php-relaunch: Cannot use --for without pause$/],
      [["status", "--reason", "x"], /^php-relaunch: Cannot use --reason without pause or resume$/],
    ];
    for (const [args, expected] of cases) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, expected, args.join(" "));
    }
    const left = await Deno.readDir(`${dir}/state`)[Symbol.asyncIterator]().next().catch(() =>
      null
    );
    assert.ok(left === null || left.done, "no pause file was written");
    assert.equal(hooks.length, 0);
  });
});
