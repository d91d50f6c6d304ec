/**
 * `deno task compile`: the build is tried on every run. Only when it fails for want of denort,
 * with the build script's own words, is the binary's test skipped: a machine that has denort (or
 * can download it) builds the binary and runs it.
 */
import assert from "node:assert/strict";
import { ROOT, runDir } from "./support/cli.ts";

async function build(env: Record<string, string> = {}) {
  const out = await new Deno.Command("sh", {
    args: [`${ROOT}/scripts/build.sh`],
    cwd: ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1", ...env },
    stdin: "null",
    signal: AbortSignal.timeout(300_000),
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** What scripts/build.sh says, and only says, when deno compile cannot get denort. */
const NO_DENORT =
  /^php-relaunch build: deno compile cannot get denort, the runtime it embeds, for Deno \d+\.\d+\.\d+\.$/m;

const built = await build();
const noDenort = built.code !== 0 && NO_DENORT.test(built.stderr);

Deno.test({
  name: noDenort
    ? `compile: SKIPPED, the build found no denort for Deno ${Deno.version.deno} (set DENORT_BIN)`
    : "compile: dist/php-relaunch is built, prints its version and probes a heartbeat",
  ignore: noDenort,
  async fn() {
    assert.equal(built.code, 0, built.stderr);
    const binary = `${ROOT}/dist/php-relaunch`;
    const version = await new Deno.Command(binary, { args: ["--version"] }).output();
    // the program's version, Deno's, and the revision it was built from
    assert.match(
      new TextDecoder().decode(version.stdout),
      /^php-relaunch \d+\.\d+\.\d+ \(deno 2\.9\.\d+, revision [0-9a-f]{12}\+?\)$/,
    );
    const dir = await runDir("compile-");
    const ac = new AbortController();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
      () => new Response("127.0.0.1\n127.0.0.1\n"),
    );
    try {
      const once = await new Deno.Command(binary, {
        args: [
          "--once",
          `http://127.0.0.1:${server.addr.port}/php-heartbeat.php`,
          "2",
          "",
          "--service",
          "php8.2-fpm",
          "--process-name",
          "php-fpm8.2",
          "--log-file",
          `${dir.path}/log`,
        ],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin" },
        stdin: "null",
      }).output();
      const out = new TextDecoder().decode(once.stdout);
      assert.equal(once.code, 0, new TextDecoder().decode(once.stderr));
      assert.match(out, /^200 healthy in \d+ ms: http:\/\/127\.0\.0\.1:\d+\/php-heartbeat\.php\n$/);
    } finally {
      ac.abort();
      await server.finished;
      await dir.remove();
    }
  },
});

Deno.test("compile: a DENORT_BIN that is not denort fails with one clear paragraph", async () => {
  const r = await build({ DENORT_BIN: "/nonexistent/denort" });
  assert.equal(r.code, 1);
  assert.match(r.stderr, NO_DENORT);
  assert.match(r.stderr, /DENORT_BIN=\/path\/to\/denort/);
  assert.doesNotMatch(r.stderr, /Stack backtrace/);
});
