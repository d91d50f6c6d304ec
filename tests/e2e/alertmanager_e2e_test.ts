/**
 * Alertmanager as a channel, end to end, against Debian's prometheus-alertmanager started by the
 * test: an incident appears there as one firing alert with its labels, and is resolved when the
 * incident ends. Nothing is restarted: the heartbeat's port is closed ("nginx down"), then
 * answered.
 */
import assert from "node:assert/strict";
import { runCli, runDir } from "../support/cli.ts";
import { Alertmanager, freePort, waitFor } from "./stack.ts";

Deno.test("e2e: an incident fires in Alertmanager, repeats as one alert, and resolves", async () => {
  const am = await Alertmanager.start();
  const dir = await runDir("am-");
  const port = freePort();
  let server: Deno.HttpServer | null = null;
  try {
    await Deno.writeTextFile(
      `${dir.path}/config.toml`,
      [
        "[state]",
        `dir = "${dir.path}/state"`,
        `lock_dir = "${dir.path}/locks"`,
        "[alertmanager]",
        `url = "${am.url}"`,
        "[[target]]",
        'name = "web"',
        `url = "http://127.0.0.1:${port}/php-heartbeat.php"`,
        'service = "php8.2-fpm"',
        "",
      ].join("\n"),
    );
    const run = () =>
      runCli([
        "--config",
        `${dir.path}/config.toml`,
        "--log-file",
        `${dir.path}/log`,
        // one probe per run
        "--run-for",
        "6",
      ]);

    const down = await run();
    assert.equal(down.code, 7, down.stderr);
    const firing = await am.alerts();
    assert.equal(firing.length, 1, JSON.stringify(firing));
    const [alert] = firing;
    assert.equal(alert!.status.state, "active");
    assert.equal(alert!.labels["alertname"], "PhpHeartbeatUnreachable");
    assert.equal(alert!.labels["target"], "web");
    assert.equal(alert!.labels["kind"], "unreachable");
    assert.match(alert!.labels["incident"]!, /^\d{8}-\d{6}-\d{3}$/);
    assert.match(alert!.annotations["summary"]!, / PHP heartbeat unreachable$/);
    assert.ok(Date.parse(alert!.endsAt) > Date.now(), "firing: ends only if not repeated");

    // still down a run later: the same alert, not a second one
    assert.equal((await run()).code, 7);
    const again = await am.alerts();
    assert.deepEqual(again.map((a) => a.labels["incident"]), [alert!.labels["incident"]]);

    // the heartbeat answers again: the incident ends, and Alertmanager resolves it
    server = Deno.serve(
      { hostname: "127.0.0.1", port, onListen: () => {} },
      () => new Response("ok"),
    );
    const up = await run();
    assert.equal(up.code, 0, up.stderr);
    const resolved = await waitFor(async () => (await am.alerts()).length === 0, 10_000, 200);
    assert.ok(resolved !== null, JSON.stringify(await am.alerts()));
    assert.match(await Deno.readTextFile(`${dir.path}/log`), /PHP recovered/);
  } finally {
    await server?.shutdown();
    await dir.remove();
    await am.stop();
  }
});
