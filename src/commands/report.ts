/**
 * `php-relaunch report [--since DURATION] [--format text|json]`: what the incident log says of
 * the period, with the hints it gives and each target's last OPcache read. Read-only: no log
 * file, no lock.
 */
import { type Config, incidentsPath, statePath } from "../config/settings.ts";
import { readIncidents } from "../record/incidents.ts";
import { buildReport, opcacheHints, renderReport } from "../record/incident_report.ts";
import type { OpcacheCounters } from "../record/metrics.ts";
import { fileStateStore, storedTargets } from "../run/state.ts";
import type { Deps } from "../shared/deps.ts";
import { ConfigError, describeError, ExitCode } from "../shared/errors.ts";
import { escapeControl } from "../shared/redact.ts";

/** How many skipped records `report` names one by one. */
const MAX_PROBLEMS_SHOWN = 5;

/** `report`: reads the incident log (read-only: no log file, no lock) and prints the report. */
export async function printReport(cfg: Config, deps: Deps): Promise<ExitCode> {
  const until = deps.clock.now();
  const since = until - cfg.report.sinceMs;
  const path = incidentsPath(cfg.stateDir);
  let read;
  try {
    read = await readIncidents(path, since);
  } catch (err) {
    throw new ConfigError([`Cannot read the incident log "${path}": ${describeError(err)}`]);
  }
  // the report's log is stderr: one line for each record left out, the first few of them
  for (const problem of read.problems.slice(0, MAX_PROBLEMS_SHOWN)) {
    deps.stderr(`php-relaunch: skipped a record of the incident log: ${escapeControl(problem)}\n`);
  }
  if (read.problems.length > MAX_PROBLEMS_SHOWN) {
    deps.stderr(
      `php-relaunch: skipped ${
        read.problems.length - MAX_PROBLEMS_SHOWN
      } more records of the incident log\n`,
    );
  }
  const report = buildReport(read.incidents, since, until, read.skipped);
  report.hints.push(...opcacheHints(await opcacheReads(cfg, deps)));
  deps.stdout(
    cfg.report.format === "json" ? JSON.stringify(report, null, 2) + "\n" : renderReport(report),
  );
  return ExitCode.Ok;
}

/**
 * Each target's last OPcache read, from its state file: the configured targets, or every state
 * file in the state folder.
 */
async function opcacheReads(
  cfg: Config,
  deps: Deps,
): Promise<{ target: string; opcache: OpcacheCounters | undefined }[]> {
  const targets = cfg.targets.length > 0
    ? cfg.targets.map((t) => ({ name: t.name, file: t.stateFile }))
    : (await storedTargets(deps.fs, cfg.stateDir)).map((name) => ({
      name,
      file: statePath(cfg.stateDir, name),
    }));
  return await Promise.all(targets.map(async (t) => {
    const exists = await deps.fs.info(t.file).catch(() => null);
    const memory = exists === null ? null : await fileStateStore(t.file).load();
    return { target: t.name, opcache: memory?.counters.opcache };
  }));
}
