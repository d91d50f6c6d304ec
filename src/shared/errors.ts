import { oneLine } from "./redact.ts";

/** Process exit codes. Few on purpose: each one is something the operator acts on differently. */
export const ExitCode = {
  /** Healthy, or php-fpm was down and has been restarted. */
  Ok: 0,
  /** A bug in php-relaunch: please report it with the log. */
  Internal: 1,
  /** Bad command line, configuration or environment: nothing was probed or restarted. */
  Usage: 2,
  /** php-fpm failed and is still down: the restart failed, or `--once` was run without `--restart`. */
  PhpDown: 3,
  /** The heartbeat answered, but not as a heartbeat (3xx, 4xx, closed without answer): fix the setup. */
  Misconfigured: 4,
  /** The heartbeat's host refused the connection or could not be resolved (nginx down): the original's code. */
  Unreachable: 7,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCode = typeof ExitCode[keyof typeof ExitCode];

/** Invalid user input or environment found before anything was done; maps to exit code 2. */
export class ConfigError extends Error {
  /** Every problem found, each a sentence naming the value and what is expected. */
  readonly issues: readonly string[];

  constructor(issues: readonly string[], options?: ErrorOptions) {
    super(issues.join("; "), options);
    this.name = "ConfigError";
    this.issues = issues;
  }
}

/**
 * Renders an error and its `cause` chain on one line, for logs and the one-line stderr message:
 * URLs cut to scheme and host (libraries put whole URLs, secrets included, into their errors) and
 * control characters escaped.
 */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (current instanceof Error) {
      parts.push(oneLine(current.message));
      current = current.cause;
    } else {
      parts.push(oneLine(String(current)));
      break;
    }
  }
  return parts.join(": ");
}
