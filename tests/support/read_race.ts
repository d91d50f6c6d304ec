/**
 * Reads `path` as an untrusted file again and again for `ms`, and prints how each read ended
 * and the slowest read's time, as JSON. Run with a narrow --allow-read, as the shipped binary:
 * Deno then resolves a path's links to check it, and O_NOFOLLOW alone does not hold.
 */
import { readRegularText } from "../../src/shared/safe_file.ts";

const [path = "", ms = "3000"] = Deno.args;
const until = Date.now() + Number(ms);
const outcomes: Record<string, number> = {};
let slowest = 0;
for (let i = 0; i < 1_000_000 && Date.now() < until; i++) {
  const started = Date.now();
  const outcome = await readRegularText(path, { maxBytes: 32 }).then(
    (text) => `read ${text.trim()}`,
    (err) => err instanceof Deno.errors.NotFound ? "missing" : "refused",
  );
  slowest = Math.max(slowest, Date.now() - started);
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
}
// deno-lint-ignore no-console -- the test reads this line
console.log(JSON.stringify({ outcomes, slowest }));
Deno.exit(0);
