/** Runs php-relaunch as a black box: `deno run` with the permission set that `compile` embeds. */
import { fileURLToPath } from "node:url";

/** The repository's root folder. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

/** What one invocation left. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The flags of `deno task start` (permission set and V8 flags), read from deno.json. */
export const START_FLAGS: readonly string[] = (() => {
  const task = (JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)) as {
    tasks: Record<string, string>;
  }).tasks.start!;
  const [, flags] = /^deno run (.*) src\/main\.ts$/.exec(task) ?? [];
  if (flags === undefined) throw new Error(`deno.json: unexpected start task: ${task}`);
  return flags.split(" ");
})();

/** The command line that `deno task start` runs, without the task runner in between. */
export function startCommand(args: string[]): [string, string[]] {
  return [Deno.execPath(), ["run", ...START_FLAGS, `${ROOT}/src/main.ts`, ...args]];
}

/**
 * Starts php-relaunch with `args` in cron's bare environment and returns at once: for a run or a
 * watch a test acts on while it lasts. Its stderr is piped when asked (read it, or cancel it).
 * With `binary`, that compiled php-relaunch is started instead of `deno run`.
 */
export function spawnCli(
  args: string[],
  stderr: "null" | "piped" = "null",
  binary?: string,
): Deno.ChildProcess {
  const [cmd, argv] = binary === undefined ? startCommand(args) : [binary, args];
  return new Deno.Command(cmd, {
    args: argv,
    cwd: ROOT,
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/root", RUST_BACKTRACE: "0" },
    stdin: "null",
    stdout: "null",
    stderr,
  }).spawn();
}

/**
 * Ends a process this test started: SIGTERM, SIGKILL after `graceMs` if it is still there.
 * Resolves to its status.
 */
export async function endChild(
  child: Deno.ChildProcess,
  graceMs: number,
): Promise<Deno.CommandStatus> {
  try {
    child.kill("SIGTERM");
  } catch { /* exited */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, graceMs);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** Stderr without Deno's warning that config-file permissions are experimental. */
function cleanStderr(text: string): string {
  return text.split("\n").filter((l) => !/Permissions in the config file/.test(l)).join("\n")
    .trim();
}

/**
 * Runs php-relaunch with `args` under `env` (cron's bare environment by default), killing it
 * after `timeoutMs` so that a hung run fails the test instead of hanging it.
 */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const [cmd, argv] = startCommand(args);
  const started = Date.now();
  const out = await new Deno.Command(cmd, {
    args: argv,
    cwd: ROOT,
    clearEnv: true,
    env: {
      PATH: "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/root",
      RUST_BACKTRACE: "0",
      NO_COLOR: "1",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      ...opts.env,
    },
    stdin: "null",
    signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return {
    code: out.code,
    stdout: decode(out.stdout).trim(),
    stderr: cleanStderr(decode(out.stderr)),
    ms: Date.now() - started,
  };
}

/** Where the shipped permissions let php-relaunch keep its files; tests put theirs below it. */
export const STATE_ROOT = "/var/lib/php-relaunch";

/**
 * A fresh folder for one test's logs, state, locks and configuration, below {@link STATE_ROOT}
 * (the binary's permissions allow nothing in /tmp). `remove()` deletes it, and STATE_ROOT too
 * when the test made it and it is empty again.
 */
export async function runDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const existed = await Deno.stat(STATE_ROOT).then(() => true, () => false);
  await Deno.mkdir(STATE_ROOT, { recursive: true, mode: 0o700 });
  const path = await Deno.makeTempDir({ dir: STATE_ROOT, prefix: `test-${prefix}` });
  return {
    path,
    async remove() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
      if (!existed) await Deno.remove(STATE_ROOT).catch(() => {});
    },
  };
}

/** A loopback HTTP server for one test that answers `answer()` and counts its requests. */
export async function withServer(
  answer: (request: Request) => Response | Promise<Response>,
  fn: (base: string, hits: () => number) => Promise<void>,
): Promise<void> {
  let hits = 0;
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    (request) => {
      hits++;
      return answer(request);
    },
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, () => hits);
  } finally {
    ac.abort();
    await server.finished;
  }
}
