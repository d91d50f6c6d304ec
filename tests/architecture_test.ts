/**
 * The layout's rule, read from the import lines of src/: stages import only stages below them
 * (or their own), no module takes part in an import circle, and the pure decisions import nothing
 * that does I/O. README, "How the code is laid out", says the same in words.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { ROOT } from "./support/cli.ts";

/**
 * The stages from the bottom up; files directly in src/ are the top (main, cli, real), and the
 * commands (one module each) just below it.
 */
export const STAGES = [
  "shared",
  "probe",
  "act",
  "fpm",
  "config",
  "record",
  "alert",
  "run",
  "commands",
  "",
] as const;

/** Modules that must stay pure: no I/O in them or in anything they import (types aside). */
const PURE = [
  "run/recovery_policy.ts",
  "run/pool_policy.ts",
  "run/schedule.ts",
  "run/crash_policy.ts",
  "run/fleet_policy.ts",
  "fpm/child_deaths.ts",
  "probe/fcgi_protocol.ts",
  "probe/result.ts",
];

const SRC = join(ROOT, "src");

interface Module {
  path: string;
  text: string;
  /**
   * Relative imports, resolved to paths below src/; whether only types are taken, and whether
   * the module is loaded when it is needed (`import("./x.ts")`) rather than with the importer.
   */
  imports: { path: string; typeOnly: boolean; dynamic: boolean }[];
}

async function modules(): Promise<Map<string, Module>> {
  const found = new Map<string, Module>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const full = join(dir, e.name);
      if (e.isDirectory) await walk(full);
      else if (e.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(full);
        const path = relative(SRC, full);
        const imports = [
          ...text.matchAll(/^(import|export)\s+(type\s+)?[^;]*?from\s+"(\.[^"]+)"/gms),
          ...text.matchAll(/()()import\(\s*"(\.[^"]+)"\s*\)/g),
        ].flatMap((m) => {
          const target = normalize(join(dirname(full), m[3]!));
          // only modules of src/ (deno.json is data)
          return target.startsWith(SRC + "/") && target.endsWith(".ts")
            ? [{
              path: relative(SRC, target),
              typeOnly: m[2] !== undefined && m[2] !== "",
              dynamic: m[1] === "",
            }]
            : [];
        });
        found.set(path, { path, text, imports });
      }
    }
  };
  await walk(SRC);
  return found;
}

function stageOf(path: string): number {
  const folder = path.includes("/") ? path.split("/")[0]! : "";
  const rank = STAGES.indexOf(folder as typeof STAGES[number]);
  assert.ok(rank >= 0, `src/${path}: "${folder}" is not a stage (${STAGES.join(", ")})`);
  return rank;
}

Deno.test("architecture: every module is in a stage, and imports only its own stage or lower ones", async () => {
  const all = await modules();
  assert.ok(all.size > 20, "src/ was read");
  const upward: string[] = [];
  for (const m of all.values()) {
    for (const i of m.imports) {
      assert.ok(all.has(i.path), `src/${m.path} imports src/${i.path}, which does not exist`);
      if (stageOf(i.path) > stageOf(m.path)) upward.push(`src/${m.path} -> src/${i.path}`);
    }
  }
  assert.deepEqual(upward, [], "imports that go up a stage");
});

Deno.test("architecture: no import circles, types included", async () => {
  const all = await modules();
  const state = new Map<string, "open" | "done">();
  const circles: string[] = [];
  const visit = (path: string, trail: string[]) => {
    if (state.get(path) === "done") return;
    if (state.get(path) === "open") {
      circles.push([...trail.slice(trail.indexOf(path)), path].join(" -> "));
      return;
    }
    state.set(path, "open");
    for (const i of all.get(path)?.imports ?? []) visit(i.path, [...trail, path]);
    state.set(path, "done");
  };
  for (const path of all.keys()) visit(path, []);
  assert.deepEqual(circles, []);
});

Deno.test("architecture: the policy, the schedule and the FastCGI protocol do no I/O", async () => {
  const all = await modules();
  // Deno's error classes are names to compare with, not I/O
  const io = /\bDeno\.(?!errors\b)\w+|\bfetch\(|\bconsole\./;
  for (const pure of PURE) {
    const seen = new Set<string>();
    const queue = [pure];
    while (queue.length > 0) {
      const path = queue.pop()!;
      if (seen.has(path)) continue;
      seen.add(path);
      const m = all.get(path);
      assert.ok(m, `src/${path} exists`);
      assert.doesNotMatch(m.text, io, `src/${path}, imported by src/${pure}, does I/O`);
      queue.push(...m.imports.filter((i) => !i.typeOnly).map((i) => i.path));
    }
  }
});

/** What only some commands need: the command line loads it with them, never up front. */
const LAZY_MODULES = ["record/incident_report.ts", "record/metrics.ts", "alert/mail.ts"];
const LAZY_PACKAGES = ["nodemailer", "prom-client", "yaml"];

Deno.test("architecture: cli.ts loads each command, and what only some need, when it runs", async () => {
  const all = await modules();
  const cli = all.get("cli.ts");
  assert.ok(cli, "src/cli.ts exists");
  // every command is loaded by cli.ts, each only when dispatched
  const commands = [...all.keys()].filter((p) => p.startsWith("commands/"));
  assert.ok(commands.length >= 6, "src/commands/ was read");
  const dispatched = new Set(cli.imports.filter((i) => i.dynamic).map((i) => i.path));
  assert.deepEqual(commands.filter((c) => !dispatched.has(c)), [], "commands cli.ts never loads");
  // what loads with cli.ts itself: its static imports that take code, and theirs
  const loaded = new Set<string>();
  const queue = ["cli.ts"];
  while (queue.length > 0) {
    const path = queue.pop()!;
    if (loaded.has(path)) continue;
    loaded.add(path);
    queue.push(
      ...(all.get(path)?.imports ?? []).filter((i) => !i.typeOnly && !i.dynamic).map((i) => i.path),
    );
  }
  const eager = [...loaded].filter((p) => p.startsWith("commands/") || LAZY_MODULES.includes(p));
  assert.deepEqual(
    eager,
    [],
    "modules that load with cli.ts although only some commands need them",
  );
  const packages = [...loaded].flatMap((p) =>
    LAZY_PACKAGES.filter((name) =>
      new RegExp(`^(import|export)\\s+(?!type\\s)[^;]*?from\\s+"${name}"`, "m").test(
        all.get(p)!.text,
      )
    ).map((name) => `src/${p} -> ${name}`)
  );
  assert.deepEqual(
    packages,
    [],
    "packages that load with cli.ts although only some commands need them",
  );
});

/** The longest a function, method or class of src/ may be, in lines from its first to its last. */
const MAX_LINES = 200;

/**
 * Every function (declared, expressed, arrow, method) and class of `text` longer than
 * {@link MAX_LINES}, as "path: kind name (lines first-last, count)". The text is parsed by Deno's
 * own TypeScript parser, the one `deno lint` uses, through a lint plugin run on it: braces in
 * strings, templates, regular expressions and comments are not counted as code.
 */
function tooLong(path: string, text: string): string[] {
  const lineStarts = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) lineStarts.push(i + 1);
  const lineOf = (offset: number) => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const found: string[] = [];
  const measure = (kind: string, name: string, range: Deno.lint.Range) => {
    const first = lineOf(range[0]);
    const last = lineOf(range[1] - 1);
    const lines = last - first + 1;
    if (lines > MAX_LINES) {
      found.push(`${path}: ${kind} ${name} (lines ${first}-${last}, ${lines})`);
    }
  };
  const keyName = (key: Deno.lint.Node) =>
    key.type === "Identifier" || key.type === "PrivateIdentifier"
      ? key.name
      : key.type === "Literal"
      ? String(key.value)
      : "[computed]";
  const plugin: Deno.lint.Plugin = {
    name: "size",
    rules: {
      "max-lines": {
        create: () => ({
          FunctionDeclaration: (n) => measure("function", n.id?.name ?? "default", n.range),
          ClassDeclaration: (n) => measure("class", n.id?.name ?? "default", n.range),
          ClassExpression: (n) => measure("class", n.id?.name ?? "(anonymous)", n.range),
          MethodDefinition: (n) => measure("method", keyName(n.key), n.range),
          FunctionExpression: (n) => {
            if (n.parent.type !== "MethodDefinition") {
              measure("function", n.id?.name ?? "(anonymous)", n.range);
            }
          },
          ArrowFunctionExpression: (n) =>
            measure(
              "arrow function",
              n.parent.type === "VariableDeclarator" && n.parent.id.type === "Identifier"
                ? n.parent.id.name
                : "(anonymous)",
              n.range,
            ),
        }),
      },
    },
  };
  Deno.lint.runPlugin(plugin, path, text);
  return found;
}

Deno.test("architecture: no function, method or class of src/ is over 200 lines", async () => {
  const all = await modules();
  const long = [...all.values()].flatMap((m) => tooLong(`src/${m.path}`, m.text));
  assert.deepEqual(long, [], `longer than ${MAX_LINES} lines: split them by job`);
});

Deno.test("architecture: the size check counts lines from a function's first to its last", () => {
  // each line with a brace that is no block's, and a character outside the BMP
  const tricky = (i: number) =>
    [
      `  const a${i} = "}";`,
      `  const b${i} = \`}\${"{"}\`;`,
      `  const c${i} = /}/;`,
      "  // } 😀",
    ][i % 4]!;
  const body = (n: number) => Array.from({ length: n - 2 }, (_, i) => tricky(i));
  const fn = (n: number) => ["function f() {", ...body(n), "}"].join("\n");
  assert.deepEqual(tooLong("/x.ts", fn(MAX_LINES)), []);
  assert.deepEqual(tooLong("/x.ts", fn(MAX_LINES + 1)), [
    `/x.ts: function f (lines 1-${MAX_LINES + 1}, ${MAX_LINES + 1})`,
  ]);
  const method = ["class C {", "  m() {", ...body(MAX_LINES + 1), "  }", "}"].join("\n");
  assert.deepEqual(tooLong("/x.ts", method), [
    `/x.ts: class C (lines 1-${MAX_LINES + 3}, ${MAX_LINES + 3})`,
    `/x.ts: method m (lines 2-${MAX_LINES + 2}, ${MAX_LINES + 1})`,
  ]);
  const arrow = ["const g = () => {", ...body(MAX_LINES + 1), "};"].join("\n");
  assert.deepEqual(tooLong("/x.ts", arrow), [
    `/x.ts: arrow function g (lines 1-${MAX_LINES + 1}, ${MAX_LINES + 1})`,
  ]);
});

Deno.test("architecture: no two modules of src/ share a file name", async () => {
  const byName = new Map<string, string[]>();
  for (const path of (await modules()).keys()) {
    const name = path.split("/").at(-1)!;
    byName.set(name, [...byName.get(name) ?? [], `src/${path}`]);
  }
  const twice = [...byName.values()].filter((paths) => paths.length > 1).map((p) => p.sort());
  assert.deepEqual(twice, [], "one name, one file: name each for its job");
});
