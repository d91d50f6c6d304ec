/**
 * Telling systemd how the watch service is doing (Type=notify, WatchdogSec): through
 * `systemd-notify`, as Deno cannot send a unix datagram without unstable APIs. The message
 * comes from that child, so the unit needs NotifyAccess=all: `--pid` could only pass it off as
 * the main process's with CAP_SYS_ADMIN, which the shipped unit's bounding set leaves out.
 * systemd-notify waits until systemd has read the message, so it is not lost when the child exits.
 */
import type { Host, ProcessRunner } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { logger } from "../shared/log.ts";
import { toolPaths } from "../act/service.ts";

/** The service manager's view of us. */
export interface Notifier {
  /** How often to say we are alive, or null when no watchdog is set. */
  readonly watchdogEveryMs: number | null;
  send(state: "READY=1" | "WATCHDOG=1" | "RELOADING=1" | "STOPPING=1"): Promise<void>;
}

/** A notifier that tells nobody: not started by systemd, or systemd-notify is missing. */
export const silentNotifier: Notifier = {
  watchdogEveryMs: null,
  send: () => Promise.resolve(),
};

/**
 * The notifier for this process: systemd's when NOTIFY_SOCKET is set and systemd-notify exists.
 * Pings are due at half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.
 */
export async function systemdNotifier(
  host: Host,
  runner: ProcessRunner,
  isExecutable: (path: string) => Promise<boolean>,
  pid: number,
): Promise<Notifier> {
  if (!host.env("NOTIFY_SOCKET")) return silentNotifier;
  let program: string | null = null;
  for (const path of toolPaths("systemd-notify")) {
    if (await isExecutable(path)) {
      program = path;
      break;
    }
  }
  if (program === null) {
    logger.warn(
      "NOTIFY_SOCKET is set but systemd-notify is missing: systemd will not hear from us.",
    );
    return silentNotifier;
  }
  const usec = Number(host.env("WATCHDOG_USEC") ?? "");
  const watchdogPid = host.env("WATCHDOG_PID");
  const watchdog = Number.isFinite(usec) && usec > 0 &&
    (watchdogPid === undefined || Number(watchdogPid) === pid);
  const notify = program;
  return {
    watchdogEveryMs: watchdog ? Math.max(100, usec / 2000) : null,
    async send(state) {
      try {
        const r = await runner.run(notify, [`--pid=${pid}`, state], { timeoutMs: 5000 });
        if (r.code !== 0) {
          logger.warn("systemd-notify {state} exited {code}: {stderr}", {
            state,
            code: r.code,
            stderr: r.stderr,
          });
        }
      } catch (err) {
        logger.warn("systemd-notify {state} failed: {error}", { state, error: describeError(err) });
      }
    },
  };
}
