/** One cron run of the fake host's /etc/php-relaunch/config.toml, with nothing kept on disk. */
import { memoryOutbox } from "../../src/alert/outbox.ts";
import { parseCommandLine } from "../../src/cli.ts";
import { loadConfig } from "../../src/config/load.ts";
import { memoryIncidentLog } from "../../src/record/incidents.ts";
import { watchRun } from "../../src/run/cron.ts";
import { memoryPauses, type Pauses } from "../../src/run/pause_file.ts";
import { type Memory, memoryStateStore } from "../../src/run/state.ts";
import type { Deps } from "../../src/shared/deps.ts";
import { memoryLocks } from "./fakes.ts";

/**
 * Runs the cron form for `runForSeconds` on `deps`: state, incidents, outbox, locks and pauses in
 * memory. Returns the exit code, the configuration, the incidents and the memory saved.
 */
export async function cronRun(
  deps: Deps,
  runForSeconds: number,
  opts: { memory?: Memory | undefined; pauses?: Pauses } = {},
) {
  const { mode, raw } = parseCommandLine([
    "--config",
    "/etc/php-relaunch/config.toml",
    "--run-for",
    String(runForSeconds),
  ]);
  const cfg = await loadConfig(mode as "minute", raw, deps);
  const incidents = memoryIncidentLog();
  const store = memoryStateStore(opts.memory);
  const code = await watchRun(cfg, deps, {
    store,
    incidents,
    outbox: memoryOutbox(),
    lock: memoryLocks(),
    pauses: opts.pauses ?? memoryPauses(),
  });
  return { code, cfg, incidents, memory: await store.load() };
}
