/**
 * `php-relaunch discover [--config]`: every php-fpm of this host and its pools, found without a
 * configuration; with `--config` (or `--format toml`), a configuration file for `watch` that
 * watches each of them, with the settings that would make it better named in comments.
 */
import { discoveryToml, renderDiscovery } from "../config/discovered.ts";
import { discoverFpm, opcacheScriptProblem } from "../fpm/discovery.ts";
import { OPCACHE_SCRIPT } from "../fpm/opcache.ts";
import type { Deps } from "../shared/deps.ts";
import { ConfigError, ExitCode } from "../shared/errors.ts";
import { escapeControl } from "../shared/redact.ts";

/** Prints what was found, as a table or as TOML. Exit 0, or 3 when no php-fpm was found. */
export async function discover(format: string | undefined, deps: Deps): Promise<ExitCode> {
  if (format !== undefined && format !== "text" && format !== "toml") {
    throw new ConfigError([`Cannot use discover format "${format}": expected text or toml`]);
  }
  const found = await discoverFpm(deps.fs);
  const text = format === "toml"
    ? discoveryToml(
      found,
      `written by php-relaunch discover on ${deps.host.hostname()} at ${
        new Date(deps.clock.now()).toISOString()
      }`,
    )
    : renderDiscovery(found);
  const opcache = found.length === 0 ? null : await opcacheLine(deps);
  const withOpcache = opcache === null
    ? text
    : text + (format === "toml" ? `# ${opcache}\n` : `${opcache}\n`);
  // names and paths come from files on the host: one line each, whatever they hold
  deps.stdout(withOpcache.split("\n").map(escapeControl).join("\n"));
  return found.length === 0 ? ExitCode.PhpDown : ExitCode.Ok;
}

/** Whether OPcache can be watched: its status script in place, or where it is missing. */
async function opcacheLine(deps: Deps): Promise<string> {
  const problem = await opcacheScriptProblem(deps.fs, OPCACHE_SCRIPT);
  return problem === null
    ? `OPcache: status script ${OPCACHE_SCRIPT} in place; each master's OPcache is watched`
    : `OPcache: not watched: ${problem}`;
}
