// deno-lint-ignore-file no-console -- a benchmark reports on the console
/**
 * The soak: watch mode probing every second on the real stack, its CPU and memory measured from
 * /proc over minutes, beside an empty `deno run` with the same flags measured the same way.
 *
 *   deno run -A bench/soak.ts [--minutes M] [--alerts] [--binary dist/php-relaunch]
 *
 * --alerts: before measuring, the watchdog sends one alert by SMTP and one by webhook (a heartbeat
 * that fails to its threshold, the pool paused so nothing is restarted), and the figures are those
 * of a watchdog whose mail and webhook code has run.
 *
 * --binary: measures that compiled php-relaunch (`deno task compile`) instead of `deno run`, beside
 * an empty program compiled with the same flags; where no empty program can be compiled (no
 * denort), beside an empty `deno run`, and the table says so.
 */
import { parseArgs } from "node:util";
import {
  endChild,
  ROOT,
  runDir,
  spawnCli,
  START_FLAGS,
  startCommand,
} from "../tests/support/cli.ts";
import { FPM_PROCESS, HEARTBEAT, pids, SmtpSink, Stack, waitFor } from "../tests/e2e/stack.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** CPU (utime + stime) of a process, in milliseconds. */
async function cpuMs(pid: number): Promise<number> {
  const f = (await Deno.readTextFile(`/proc/${pid}/stat`)).split(")")[1]!.trim().split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // clock ticks (100/s) -> ms
}

/** Resident memory in MB: total, anonymous, file-backed; and the peak (VmHWM). */
export interface Memory {
  rss: number;
  anon: number;
  file: number;
  hwm: number;
}

async function memoryOf(pid: number): Promise<Memory> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const mb = (field: string) =>
    Number(status.match(new RegExp(`${field}:\\s*(\\d+)`))?.[1] ?? NaN) / 1024;
  return { rss: mb("VmRSS"), anon: mb("RssAnon"), file: mb("RssFile"), hwm: mb("VmHWM") };
}

/** What a soak measured. */
export interface SoakFigures {
  wallMs: number;
  cpuMs: number;
  /** At the end. */
  memory: Memory;
  /** The highest resident figure of the samples every 5 s. */
  highestRss: number;
  highestAnon: number;
}

/** Measures `pid` for `ms` after `settleMs`: CPU over the window, memory every 5 s and at the end. */
export async function measure(pid: number, ms: number, settleMs = 10_000): Promise<SoakFigures> {
  await sleep(settleMs);
  const cpu0 = await cpuMs(pid);
  const t0 = Date.now();
  let highestRss = 0;
  let highestAnon = 0;
  let memory = await memoryOf(pid);
  while (Date.now() - t0 < ms) {
    await sleep(Math.min(5000, Math.max(0, ms - (Date.now() - t0))));
    memory = await memoryOf(pid);
    highestRss = Math.max(highestRss, memory.rss);
    highestAnon = Math.max(highestAnon, memory.anon);
  }
  return {
    wallMs: Date.now() - t0,
    cpuMs: (await cpuMs(pid)) - cpu0,
    memory,
    highestRss,
    highestAnon,
  };
}

/**
 * An empty program run as php-relaunch is (`deno run` and the same flags, or with `compiled`
 * compiled with them), measured the same way. Its name says which it was.
 */
export async function emptyProgram(
  ms: number,
  compiled = false,
): Promise<{ name: string; figures: SoakFigures }> {
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-empty-" });
  try {
    const file = `${dir}/empty.ts`;
    await Deno.writeTextFile(file, "setInterval(() => {}, 1000);\n");
    const [cmd, argv] = startCommand([]);
    // the same flags, another program (deno.json named: it holds the permission set)
    const flags = ["--config", `${ROOT}/deno.json`, ...START_FLAGS];
    let name = "empty `deno run`, same flags";
    let command: [string, string[]] = [
      cmd,
      argv.flatMap((a) =>
        a.endsWith("/src/main.ts") ? ["--config", `${ROOT}/deno.json`, file] : [a]
      ),
    ];
    if (compiled) {
      const why = await compileEmpty(flags, file, `${dir}/empty`);
      if (why === null) {
        name = "empty program compiled, same flags";
        command = [`${dir}/empty`, []];
      } else name += ` (none compiled: ${why})`;
    }
    const child = new Deno.Command(command[0], {
      args: command[1],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      return { name, figures: await measure(child.pid, ms, 3000) };
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Compiles `file` to `out` as `deno task compile` compiles php-relaunch; why not, or null. */
async function compileEmpty(flags: string[], file: string, out: string): Promise<string | null> {
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["compile", ...flags.filter((f) => f !== "-q"), "--output", out, file],
    cwd: ROOT,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  if (run.success) return null;
  const said = new TextDecoder().decode(run.stderr).trim();
  return /denort|base binary/i.test(said) ? "no denort here" : said.split("\n")[0] ?? "failed";
}

/** Watch mode every second on the stack, measured for `ms`. */
export async function soakWatch(
  root: string,
  ms: number,
  options: { alerts?: boolean; binary?: string | undefined } = {},
): Promise<SoakFigures> {
  const dir = await Deno.makeTempDir({ dir: root });
  let smtp: SmtpSink | null = null;
  let hook: Deno.HttpServer<Deno.NetAddr> | null = null;
  const extra: string[] = [];
  let hooked = 0;
  if (options.alerts) {
    smtp = await SmtpSink.start();
    hook = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      hooked++;
      return new Response("ok");
    });
    extra.push(
      "--mail-to",
      "ops@example.test",
      "--smtp-host",
      "127.0.0.1",
      "--smtp-port",
      String(smtp.port),
      "--smtp-tls",
      "none",
      "--webhook",
      `http://127.0.0.1:${(hook.addr as Deno.NetAddr).port}/hook`,
    );
  }
  const child = spawnCli(
    [
      "watch",
      HEARTBEAT,
      "--interval",
      "1",
      "--timeout",
      "5",
      "--service",
      "php8.2-fpm",
      "--log-file",
      `${dir}/log`,
      "--state-dir",
      `${dir}/state`,
      "--lock-file",
      `${dir}/lock`,
      ...extra,
    ],
    "null",
    options.binary,
  );
  try {
    const log = () => Deno.readTextFile(`${dir}/log`).catch(() => "");
    await waitFor(async () => /Watching/.test(await log()), 30_000, 100);
    if (options.alerts) await sendAlerts(smtp!, () => hooked);
    return await measure(child.pid, ms);
  } finally {
    await endChild(child, 10_000);
    await smtp?.stop();
    await hook?.shutdown();
  }
}

/** Makes the watchdog alert: php-fpm killed, restarted by it, told by mail and webhook. */
async function sendAlerts(smtp: SmtpSink, hooked: () => number): Promise<void> {
  for (const pid of await pids(FPM_PROCESS)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  const told = await waitFor(
    async () => hooked() > 0 && (await smtp.messages()).length > 0,
    60_000,
    200,
  );
  if (told === null) throw new Error("no alert by mail and webhook within 60 s");
}

function line(name: string, f: SoakFigures): string {
  const pct = (f.cpuMs / f.wallMs) * 100;
  return `| ${name} | ${(f.wallMs / 60_000).toFixed(1)} | ${(f.cpuMs / 1000).toFixed(2)} | ${
    pct.toFixed(3)
  } | ${f.memory.rss.toFixed(1)} | ${f.highestRss.toFixed(1)} | ${f.memory.anon.toFixed(1)} | ${
    f.memory.file.toFixed(1)
  } | ${f.memory.hwm.toFixed(1)} |`;
}

/** The soak's table: watch mode and an empty Deno, measured the same way. */
export async function soakTable(
  root: string,
  ms: number,
  alerts: boolean,
  binary?: string,
): Promise<string> {
  const form = binary === undefined ? "watch" : "watch (compiled)";
  const rows = [line(`${form}, interval 1 s`, await soakWatch(root, ms, { binary }))];
  if (alerts) {
    rows.push(
      line(`${form}, after SMTP and webhook alerts`, await soakWatch(root, ms, { alerts, binary })),
    );
  }
  const empty = await emptyProgram(ms, binary !== undefined);
  rows.push(line(empty.name, empty.figures));
  return `| process | minutes | CPU s | % of a core | resident MB (end) | resident MB (highest) | anonymous MB | file MB | peak MB (VmHWM) |
|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}`;
}

if (import.meta.main) {
  const args = parseArgs({
    args: Deno.args,
    options: {
      minutes: { type: "string", default: "3" },
      alerts: { type: "boolean" },
      binary: { type: "string" },
    },
  });
  const stack = await Stack.up();
  const work = await runDir("soak-");
  try {
    const ms = Number(args.values.minutes) * 60_000;
    console.log(await soakTable(work.path, ms, !!args.values.alerts, args.values.binary));
  } finally {
    await work.remove();
    await stack.down();
  }
}
