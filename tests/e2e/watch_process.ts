/** A `php-relaunch watch` process under test, and the configuration files the tests give it. */
import { endChild, spawnCli } from "../support/cli.ts";
import { waitFor } from "./stack.ts";

/** A running `php-relaunch watch`. */
export class WatchProcess {
  private constructor(readonly child: Deno.ChildProcess, readonly log: string) {}

  static start(config: string, log: string): WatchProcess {
    return new WatchProcess(spawnCli(["watch", "--config", config]), log);
  }

  async lines(): Promise<string[]> {
    const text = await Deno.readTextFile(this.log).catch(() => "");
    return text.split("\n").filter((l) => l.trim() !== "");
  }

  /** Waits until a log line matches `pattern`; returns the line or null. */
  async waitForLine(pattern: RegExp, withinMs: number): Promise<string | null> {
    let found: string | null = null;
    await waitFor(
      async () => {
        found = (await this.lines()).find((l) => pattern.test(l)) ?? null;
        return found !== null;
      },
      withinMs,
      200,
    );
    return found;
  }

  async stop(): Promise<number> {
    return (await endChild(this.child, 60_000)).code;
  }
}

export function configToml(opts: {
  dir: string;
  smtpPort: number;
  targets: string;
  defaults?: string;
}): string {
  return `
[defaults]
interval = 0.5
timeout = 2
grace_period = 2
start_timeout = 5
rungs = ["kill"]
mail_to = ["ops@example.com"]
${opts.defaults ?? ""}

[mail]
smtp_host = "127.0.0.1"
smtp_port = ${opts.smtpPort}
from = "php-relaunch@example.org"

[log]
file = "${opts.dir}/watch.log"

[state]
dir = "${opts.dir}/state"
lock_dir = "${opts.dir}"

${opts.targets}
`;
}

/** Writes {@link configToml}'s configuration to `dir`/config.toml; its path. */
export async function writeConfigToml(opts: Parameters<typeof configToml>[0]): Promise<string> {
  const path = `${opts.dir}/config.toml`;
  await Deno.writeTextFile(path, configToml(opts));
  return path;
}
