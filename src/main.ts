/** Entry point: parse, build, run, exit. */
import { run } from "./cli.ts";
import { realDeps } from "./real.ts";

if (import.meta.main) {
  Deno.exit(await run(Deno.args, realDeps()));
}
