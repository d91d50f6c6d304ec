/**
 * Why php-fpm cannot start: its own configuration test (`php-fpm8.2 -t -y <conf>`, what Debian's
 * init script runs before a start), whose errors name the file, the line and the entry, where a
 * failed start says only that no process came up.
 */
import type { Fs, ProcessRunner } from "../shared/deps.ts";
import { fpmBinary } from "../act/service.ts";

/** What the configuration test said. */
export interface ConfigTest {
  ok: boolean;
  /** The test's error lines, without their time stamps; empty when it passed. */
  errors: string[];
  /** The command, for the alert: "/usr/sbin/php-fpm8.2 -t -y /etc/php/8.2/fpm/php-fpm.conf". */
  command: string;
}

/** How long the test may take: it parses files and exits. */
export const CONFIG_TEST_TIMEOUT_MS = 10_000;
/** The most error lines kept: the first ones name the cause, the rest repeat it. */
const MAX_ERRORS = 5;
/** Lines that follow every failure and say nothing of its cause. */
const GENERIC = [/^failed to load configuration file/, /^FPM initialization failed/];

/** The error lines of a test's output, without "[27-Nov-2026 20:03:52] ERROR: ". */
export function configTestErrors(output: string): string[] {
  return output.split("\n")
    .map((line) => /^(?:\[[^\]]*\]\s*)?(?:ERROR|ALERT):\s*(.*)$/.exec(line.trim())?.[1]?.trim())
    .filter((line): line is string => !!line && !GENERIC.some((g) => g.test(line)))
    .slice(0, MAX_ERRORS);
}

/**
 * Runs php-fpm's configuration test for the service whose processes are named `processName` and
 * whose main file is `configFile`. Null when there is no binary to run, no file to test, or the
 * test cannot be run (not allowed, say): that says nothing of the configuration. Never throws.
 */
export async function testFpmConfig(
  processName: string,
  configFile: string | null,
  deps: { runner: ProcessRunner; fs: Pick<Fs, "isExecutable"> },
): Promise<ConfigTest | null> {
  if (configFile === null) return null;
  const binary = await fpmBinary(deps.fs, processName);
  if (binary === null) return null;
  const args = ["-t", "-y", configFile];
  const command = [binary, ...args].join(" ");
  try {
    const r = await deps.runner.run(binary, args, { timeoutMs: CONFIG_TEST_TIMEOUT_MS });
    if (r.code === 0) return { ok: true, errors: [], command };
    const errors = configTestErrors(`${r.stderr}\n${r.stdout}`);
    return {
      ok: false,
      errors: errors.length > 0
        ? errors
        : [r.timedOut ? "the test timed out" : `the test exited ${r.code}`],
      command,
    };
  } catch {
    return null;
  }
}
