/**
 * `php-relaunch reset [target]`: re-arms a target that gave up, forgetting its restart history.
 */
import { type Config, lockPath, statePath } from "../config/settings.ts";
import { fileStateStore, rearmStored, storedTargets } from "../run/state.ts";
import type { Deps } from "../shared/deps.ts";
import { ExitCode } from "../shared/errors.ts";
import { tryLock, waitForLock } from "../shared/lock.ts";
import { logger } from "../shared/log.ts";

/** How long `reset` waits for a cron run under way to finish with the target. */
const RESET_LOCK_WAIT_MS = 75_000;
/** How often `reset` tries the lock again meanwhile. */
const RESET_LOCK_POLL_MS = 500;

/**
 * `reset [target]`: forgets giving up and the restart history of one target, or all. It takes
 * each target's lock first, so that a cron run under way cannot write the old state back over
 * it; a watch process holds its locks for good, and is re-armed with SIGHUP instead.
 */
export async function resetTargets(cfg: Config, deps: Deps): Promise<ExitCode> {
  const lockOf = new Map(cfg.targets.map((t) => [t.name, t.lockFile]));
  const names = cfg.commandTarget !== null
    ? [cfg.commandTarget]
    : cfg.targets.length > 0
    ? cfg.targets.map((t) => t.name)
    : await storedTargets(deps.fs, cfg.stateDir);
  let code: ExitCode = ExitCode.Ok;
  for (const name of names) {
    // the cron form names its target after the service, as its lock
    const lockFile = lockOf.get(name) ?? lockPath(cfg.lockDir, name);
    const until = deps.clock.now() + RESET_LOCK_WAIT_MS;
    const { lock } = await waitForLock({
      take: () => tryLock(lockFile),
      clock: deps.clock,
      pollMs: RESET_LOCK_POLL_MS,
      timeLeft: (now) => now < until,
    });
    if (lock === null) {
      deps.stderr(
        `php-relaunch: ${name} is held by a running php-relaunch (${lockFile}): if it is the watch service, re-arm it with SIGHUP (systemctl reload php-relaunch)\n`,
      );
      code = ExitCode.Usage;
      continue;
    }
    using _held = lock;
    await rearmStored(fileStateStore(statePath(cfg.stateDir, name)));
    logger.info("Re-armed {name}: restart history and giving up forgotten.", { name });
    deps.stdout(`re-armed ${name}\n`);
  }
  if (names.length === 0) deps.stdout(`nothing to reset in ${cfg.stateDir}\n`);
  return code;
}
