/** `deno task compile`: the binary when denort can be had, a clear paragraph when it cannot. */
import assert from "node:assert/strict";
import { ROOT } from "./support/cli.ts";

const denoVersion = Deno.version.deno;
const cachedZip = `${
  Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`
}/dl/release/v${denoVersion}/denort-x86_64-unknown-linux-gnu.zip`;
const denortBin = Deno.env.get("DENORT_BIN");
const runtimeAvailable = denortBin !== undefined ||
  (await Deno.stat(cachedZip).then(() => true, () => false));

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

Deno.test({
  name: runtimeAvailable
    ? "compile: dist/php-relaunch is built and runs"
    : `compile: SKIPPED, no denort for Deno ${denoVersion} (set DENORT_BIN or cache ${cachedZip})`,
  ignore: !runtimeAvailable,
  async fn() {
    const r = await build();
    assert.equal(r.code, 0, r.stderr);
    const version = await new Deno.Command(`${ROOT}/dist/php-relaunch`, { args: ["--version"] })
      .output();
    // the program's version, Deno's, and the revision it was built from
    assert.match(
      new TextDecoder().decode(version.stdout),
      /^php-relaunch \d+\.\d+\.\d+ \(deno 2\.9\.\d+, revision [0-9a-f]{12}\+?\)$/,
    );
  },
});

Deno.test("compile: a DENORT_BIN that is not denort fails with one clear paragraph", async () => {
  const r = await build({ DENORT_BIN: "/nonexistent/denort" });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /deno compile cannot get denort, the runtime it embeds, for Deno 2\.9\./);
  assert.match(r.stderr, /DENORT_BIN=\/path\/to\/denort/);
  assert.doesNotMatch(r.stderr, /Stack backtrace/);
});
