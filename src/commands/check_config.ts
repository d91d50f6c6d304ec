/**
 * `php-relaunch check-config`: loads the configuration (which checks it: a bad one is exit 2
 * before this runs) and prints what it will do, target by target.
 */
import { describeRoute } from "../alert/mail.ts";
import { describeDeadman } from "../alert/deadman_switch.ts";
import type { Config } from "../config/settings.ts";
import { describeFleet } from "../config/fleet_settings.ts";
import { describeBalancer } from "../config/balancer_settings.ts";
import { OPCACHE_SCRIPT } from "../fpm/opcache.ts";
import { describeFcgiTarget } from "../probe/fcgi.ts";
import type { Deps } from "../shared/deps.ts";
import { ExitCode } from "../shared/errors.ts";
import { escapeControl, publicUrl, webhookName } from "../shared/redact.ts";

/** Prints the settings of a configuration that passed its checks; exit 0. */
export function checkConfig(cfg: Config, deps: Deps): ExitCode {
  deps.stdout(describeConfig(cfg).split("\n").map(escapeControl).join("\n"));
  return ExitCode.Ok;
}

/** The settings `check-config` prints. */
export function describeConfig(cfg: Config): string {
  const lines = [
    `config file    ${cfg.configFile ?? "none (command line)"}`,
    `init system    ${cfg.init}: ${Object.values(cfg.tools).filter(Boolean).join(" ")}`,
    `mail from      ${cfg.mailFrom} via ${describeRoute(cfg.mail)}`,
    `webhook        ${cfg.webhook ? webhookName(cfg.webhook) : "none"}`,
    `dead-man       ${describeDeadman(cfg.deadman)}`,
    `metrics        ${
      [
        cfg.metricsFile && `file ${cfg.metricsFile}`,
        cfg.metricsListen &&
        `http://${cfg.metricsListen.hostname}:${cfg.metricsListen.port}/metrics`,
      ].filter(Boolean).join(", ") || "none"
    }`,
    `balancer       ${describeBalancer(cfg.balancer ?? null)}`,
    `log file       ${cfg.logFile} (${cfg.logFormat})`,
    `state folder   ${cfg.stateDir}`,
    ...describeFleet(cfg.fleet),
  ];
  if (cfg.mode !== "watch") lines.push(`run length     ${cfg.runMs / 1000} s`);
  for (const t of cfg.targets) {
    const p = t.policy;
    lines.push(
      "",
      `target ${t.name}`,
      `  heartbeat    ${publicUrl(t.url)} (timeout ${t.timeoutMs / 1000} s, every ${
        p.intervalMs / 1000
      } s)`,
      `  php-fpm      ${t.fpm.service}, processes named ${t.fpm.processName}`,
      `  expect       ${
        t.expect === "" ? "any 2xx answer" : `a 2xx whose body starts with "${t.expect}"`
      }`,
      `  php-cgi      ${t.cgi ? `${t.cgi.service}, processes named ${t.cgi.processName}` : "no"}`,
      `  restart      after ${p.failureThreshold} failures or ${p.timeoutThreshold} timeouts (5xx confirmed after ${
        p.confirmDelayMs / 1000
      } s); rungs ${t.rungs.join(" > ")}; at most ${p.maxRestarts} in ${
        p.restartWindowMs / 60_000
      } min`,
      `  status page  ${
        t.status === null
          ? "none (set status_url for early warnings, busy-or-hung and evidence)"
          : `${
            describeFcgiTarget(t.status)
          }${t.status.path}; warn at listen queue > ${t.warn.listenQueue}, +${t.warn.slowRequests} slow requests${
            t.warn.maxChildren ? ", max children reached" : ""
          }; overloaded: ${p.onOverload}; stuck after ${t.stuckAfterMs / 1000} s`
      }`,
      ...(t.pools.length === 0 ? [] : [
        `  pools        ${t.poolName} (the heartbeat's), ${
          t.pools.map((p) => p.name).join(", ")
        }: one failing while another answers has its stuck workers killed; the service is restarted only when none answers`,
        ...t.pools.map((p) =>
          `  pool ${p.name.padEnd(8)}${publicUrl(p.url)}; status page ${
            p.status === null ? "none" : `${describeFcgiTarget(p.status)}${p.status.path}`
          }; stuck after ${p.stuckAfterMs / 1000} s`
        ),
      ]),
      `  php-fpm conf ${t.fpmConfig ?? "unknown (set fpm_config)"}`,
      `  crash loops  ${childCrashesLine(t)}`,
      `  OPcache      ${
        (t.opcache?.intervalMs ?? 0) === 0
          ? "not watched (opcache_interval = 0)"
          : `${OPCACHE_SCRIPT} asked every ${
            t.opcache!.intervalMs / 1000
          } s when installed; warn when the hit rate falls ${t.opcache!.hitDropPoints} points`
      }`,
      `  mail to      ${t.mailTo.length ? t.mailTo.join(", ") : "nobody"}`,
      `  lock, state  ${t.lockFile}, ${t.stateFile}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** What `check-config` says of a target's watch of its crashing children. */
function childCrashesLine(t: Config["targets"][number]): string {
  const c = t.childCrashes;
  if (c === undefined || c.count === 0) return "not watched (warn_child_crashes = 0)";
  if (t.fpmConfig === null) {
    return "not watched: php-fpm's configuration is unknown (set fpm_config)";
  }
  return `alert at ${c.count} crashes of a pool within ${
    c.windowMs / 1000
  } s, from php-fpm's error_log; nginx's lost requests from ${
    c.nginxErrorLog ?? 'nowhere (nginx_error_log = "")'
  }`;
}
