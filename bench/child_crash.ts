// deno-lint-ignore-file no-console -- a benchmark reports on the console
/**
 * Child crash loops: the time from a page's first crash (its first 502 through nginx) to the
 * alert's arrival at a real SMTP server, in watch mode (interval 1 s), with a php-fpm8.2 master of
 * its own (php8.2-fpm-crashbench) whose /crash.php sends its worker SIGSEGV, requested every 0.1 s.
 * Part of `deno task bench` (`--only crash`); alone: `deno run -A bench/child_crash.ts [--runs N]`.
 */
import { runDir } from "../tests/support/cli.ts";
import { ExtraPool, FPM_PROCESS, SmtpSink, Stack, waitFor } from "../tests/e2e/stack.ts";
import { configToml, WatchProcess } from "../tests/e2e/watch_process.ts";

const PORT = 8896;
const SCRIPTS = "/var/www/php-relaunch-bench-crash";
const SOCKET = "/run/php/php8.2-fpm-crashbench.sock";

/** What the runs measured: each run's seconds, and the restarts php-fpm got meanwhile. */
export interface CrashFigures {
  seconds: number[];
  /** Runs in which no alert came within 30 s. */
  missed: number;
  /** Runs in which the master changed (a restart): the target is none. */
  restarted: number;
}

async function crashPage(): Promise<string> {
  try {
    const r = await fetch(`http://127.0.0.1:${PORT}/crash.php`, {
      signal: AbortSignal.timeout(2000),
    });
    await r.body?.cancel();
    return String(r.status);
  } catch (err) {
    return String(err);
  }
}

/** `runs` crash loops, each watched by a fresh watch mode; puts back what it made. */
export async function crashToAlert(root: string, runs: number): Promise<CrashFigures> {
  const pool = new ExtraPool({
    suffix: "crashbench",
    nginxPort: PORT,
    poolLines: ["pm = static", "pm.max_children = 2", "rlimit_core = 0"],
    siteLines: [
      "    location = /crash.php {",
      "        include fastcgi_params;",
      `        fastcgi_param SCRIPT_FILENAME ${SCRIPTS}/crash.php;`,
      `        fastcgi_pass unix:${SOCKET};`,
      "    }",
    ],
  });
  const smtp = await SmtpSink.start();
  const figures: CrashFigures = { seconds: [], missed: 0, restarted: 0 };
  try {
    await Deno.mkdir(SCRIPTS, { recursive: true, mode: 0o755 });
    await Deno.writeTextFile(`${SCRIPTS}/crash.php`, "<?php posix_kill(posix_getpid(), 11);\n");
    await Deno.chmod(`${SCRIPTS}/crash.php`, 0o644);
    await pool.create();
    for (let run = 0; run < runs; run++) {
      const dir = await Deno.makeTempDir({ dir: root, prefix: "crash-" });
      const config = `${dir}/config.toml`;
      await Deno.writeTextFile(
        config,
        configToml({
          dir,
          smtpPort: smtp.port,
          defaults: "",
          targets: `
[[target]]
name = "crash${run}"
url = "${pool.heartbeat}"
service = "${pool.service}"
process_name = "${FPM_PROCESS}"
pid_file = "${pool.pidFile}"
fpm_config = "${pool.files.conf}"
`,
        }).replace("interval = 0.5", "interval = 1"),
      );
      const master = await pool.master();
      const watch = WatchProcess.start(config, `${dir}/watch.log`);
      try {
        await waitFor(async () => (await watch.lines()).some((l) => /Watching/.test(l)), 30_000);
        // past its first step, which finds where php-fpm's error log ends
        await new Promise((r) => setTimeout(r, 2000 + Math.random() * 1000));
        const mails = (await smtp.messages()).length;
        let first: number | null = null;
        let looping = true;
        const loop = (async () => {
          const start = Date.now();
          while (looping && Date.now() - start < 40_000) {
            const answer = await crashPage();
            if (answer === "502" && first === null) first = Date.now();
            await new Promise((r) => setTimeout(r, 100));
          }
        })();
        const subject = new RegExp(`PHP children crashing \\[crash${run} #`);
        const got = await waitFor(
          async () => (await smtp.messages()).slice(mails).some((m) => subject.test(m.subject)),
          30_000,
          50,
        );
        const at = Date.now();
        looping = false;
        await loop;
        if (got === null || first === null) figures.missed++;
        else figures.seconds.push((at - first) / 1000);
        if ((await pool.master()) !== master) figures.restarted++;
      } finally {
        await watch.stop();
      }
    }
  } finally {
    await pool.remove();
    await Deno.remove(pool.files.errorLog).catch(() => {});
    await Deno.remove(SCRIPTS, { recursive: true }).catch(() => {});
    await smtp.stop();
  }
  return figures;
}

/** The results.md row of `f`. */
export function crashRow(f: CrashFigures): string {
  const s = [...f.seconds].sort((a, b) => a - b);
  const median = s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
  const show = (x: number | undefined) => x === undefined || Number.isNaN(x) ? "-" : x.toFixed(1);
  return `| watch | first SIGSEGV of a page to the alert's arrival | ${s.length} | ${
    show(s[0])
  } | ${show(median)} | ${show(s.at(-1))} | ${f.missed} | ${f.restarted} |`;
}

if (import.meta.main) {
  const runs = Math.max(1, Number(Deno.args[Deno.args.indexOf("--runs") + 1] ?? 5) || 5);
  const stack = await Stack.up();
  const work = await runDir("bench-crash-");
  try {
    console.log(crashRow(await crashToAlert(work.path, runs)));
  } finally {
    await stack.healthy().catch(() => {});
    await stack.down();
    await work.remove();
  }
}
