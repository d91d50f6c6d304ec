/**
 * What `php-relaunch discover` says of the php-fpm it found: a table for people, and a ready
 * configuration file (one target per service) whose comments name each setting that would make
 * the watch better, and the line to add to which pool file.
 */
import { stringify } from "smol-toml";
import { fcgiUrl, type FoundService } from "../fpm/discover.ts";
import type { PoolSettings } from "../fpm/config.ts";

/** The repo's nginx heartbeat (nginx/php-heartbeat.conf): the probe when no pool has a ping. */
export const NGINX_HEARTBEAT = "http://127.0.0.1:8889/php-heartbeat.php";

/** A status listener's address suggested in comments: the sample pool's (nginx/php-fpm-pool.conf.sample). */
const STATUS_LISTEN = "127.0.0.1:9001";

const dash = (v: string | number | null) => v === null ? "-" : String(v);

/** The table: a line per service, then a line per pool. */
export function renderDiscovery(found: readonly FoundService[]): string {
  if (found.length === 0) {
    return "no php-fpm service found (in /etc/init.d, the systemd unit folders or rc.d)\n";
  }
  const lines: string[] = [];
  for (const s of found) {
    lines.push(
      `${s.service}: processes ${s.processName}, pid file ${dash(s.pidFile)}, config ${
        dash(s.configFile)
      }`,
    );
    if (s.pools.length === 0) lines.push("  no pool read (php-fpm.conf missing or unreadable)");
    const rows = s.pools.map((p) => [
      p.pool,
      dash(p.listen),
      `${dash(p.pm)}/${dash(p.maxChildren)}`,
      dash(p.pingPath),
      dash(p.statusPath),
      dash(p.statusListen),
      dash(p.slowlog),
    ]);
    const head = [
      "pool",
      "listen",
      "pm/max",
      "ping.path",
      "status_path",
      "status_listen",
      "slowlog",
    ];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    if (rows.length > 0) {
      for (const row of [head, ...rows]) {
        lines.push(`  ${row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()}`);
      }
    }
  }
  return lines.join("\n") + "\n";
}

/** The probe of a service: the first pool with a ping over FastCGI, or the nginx heartbeat. */
function probeOf(s: FoundService): { url: string; pool: PoolSettings | null } {
  for (const p of s.pools) {
    const url = fcgiUrl(p.listen, p.pingPath);
    if (url !== null) return { url, pool: p };
  }
  return { url: NGINX_HEARTBEAT, pool: null };
}

/** Its status page: the first pool with one, best on its own listener. */
function statusOf(s: FoundService): string | null {
  for (const p of s.pools) {
    const url = fcgiUrl(p.statusListen ?? p.listen, p.statusPath);
    if (url !== null) return url;
  }
  return null;
}

/** What each pool lacks for a better watch, as comments naming the line and the file. */
function advice(s: FoundService, probe: PoolSettings | null): string[] {
  const out: string[] = [];
  for (const p of s.pools) {
    const where = `to [${p.pool}] in ${p.file ?? s.configFile ?? "its pool file"}`;
    if (p.pingPath === null) {
      out.push(
        `# add "ping.path = /ping" ${where}: a probe of php-fpm itself, without nginx${
          probe === null ? "" : ` (pool ${probe.pool} is probed now)`
        }`,
      );
    }
    if (p.statusPath === null) {
      out.push(
        `# add "pm.status_path = /status" and "pm.status_listen = ${STATUS_LISTEN}" ${where}: early warnings, busy-or-hung in a second, the workers' requests in each incident`,
      );
    } else if (p.statusListen === null) {
      out.push(
        `# add "pm.status_listen = ${STATUS_LISTEN}" ${where}: its status page then answers even when every worker is busy`,
      );
    }
  }
  return out;
}

/** A configuration file for `php-relaunch watch`, one target per service. */
export function discoveryToml(found: readonly FoundService[], header: string): string {
  const parts = [
    `# ${header}`,
    "# Check it with: php-relaunch check-config --config <this file>",
    "",
    "[defaults]",
    '# mail_to = ["ops@example.com"]',
    "",
  ];
  for (const s of found) {
    const probe = probeOf(s);
    const status = statusOf(s);
    const target: Record<string, string> = {
      name: s.service,
      url: probe.url,
      service: s.service,
      "process_name": s.processName,
    };
    if (s.pidFile !== null) target["pid_file"] = s.pidFile;
    if (s.configFile !== null) target["fpm_config"] = s.configFile;
    if (status !== null) target["status_url"] = status;
    if (probe.pool === null) {
      parts.push(
        "# no pool has a ping.path: the probe goes through nginx's heartbeat vhost",
        "# (nginx/php-heartbeat.conf and php-heartbeat.php from php-relaunch's repository)",
      );
    }
    parts.push(...advice(s, probe.pool), stringify({ target: [target] }).trimEnd(), "");
  }
  return parts.join("\n");
}
