/**
 * What `php-relaunch discover` says of the php-fpm it found: a table for people, and a ready
 * configuration file (one target per service) whose comments name each setting that would make
 * the watch better, and the line to add to which pool file.
 */
import { stringify } from "smol-toml";
import { fcgiUrl, type FoundService } from "../fpm/discovery.ts";
import type { PoolSettings } from "../fpm/config.ts";

/** The repo's nginx heartbeat (nginx/php-heartbeat.conf): the probe when no pool has a ping. */
export const NGINX_HEARTBEAT = "http://127.0.0.1:8889/php-heartbeat.php";

/**
 * The first status listener's port suggested in comments: the sample pool's
 * (nginx/php-fpm-status.conf); each further pool gets the next port no pool uses.
 */
/**
 * Below 1024, where only root may bind: while php-fpm is down (a crash, a restart) another local
 * user could take a free port above it, and php-fpm would not start until they let go.
 */
const STATUS_PORT = 909;

/** Suggests loopback ports for status listeners, none twice and none a pool already listens on. */
function statusPorts(found: readonly FoundService[]): () => string {
  const used = new Set(
    found.flatMap((s) => s.pools.flatMap((p) => [p.listen, p.statusListen]))
      .flatMap((l) => /(?:^|:)(\d+)$/.exec(l ?? "")?.[1] ?? []).map(Number),
  );
  let port = STATUS_PORT;
  return () => {
    while (used.has(port)) port++;
    used.add(port);
    return `127.0.0.1:${port}`;
  };
}

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

/** A pool's own status page, best on its own listener; null: it has none. */
function statusOf(p: PoolSettings): string | null {
  return fcgiUrl(p.statusListen ?? p.listen, p.statusPath);
}

/** The status page of a service probed through nginx: the first pool's that has one. */
function anyStatusOf(s: FoundService): string | null {
  for (const p of s.pools) {
    const url = statusOf(p);
    if (url !== null) return url;
  }
  return null;
}

/** The service's other pools with a ping: each probed, and freed, on its own. */
function otherPools(s: FoundService, probe: PoolSettings): Record<string, string>[] {
  return s.pools.flatMap((p) => {
    const url = p === probe ? null : fcgiUrl(p.listen, p.pingPath);
    if (url === null) return [];
    const status = statusOf(p);
    return [{ name: p.pool, url, ...(status === null ? {} : { "status_url": status }) }];
  });
}

/** What each pool lacks for a better watch, as comments naming the line and the file. */
function advice(
  s: FoundService,
  probe: PoolSettings | null,
  nextPort: () => string,
): string[] {
  const out: string[] = [];
  for (const p of s.pools) {
    const where = `to [${p.pool}] in ${p.file ?? s.configFile ?? "its pool file"}`;
    if (p.pingPath === null) {
      out.push(
        `# add "ping.path = /ping" ${where}: a probe of php-fpm itself, without nginx${
          probe === null ? "" : `, and the pool then watched on its own beside ${probe.pool}`
        }`,
      );
    }
    if (p.statusPath === null) {
      out.push(
        `# add "pm.status_path = /status" and "pm.status_listen = ${nextPort()}" ${where}: early warnings, busy-or-hung in a second, the workers' requests in each incident`,
      );
    } else if (p.statusListen === null) {
      out.push(
        `# add "pm.status_listen = ${nextPort()}" ${where}: its status page then answers even when every worker is busy`,
      );
    }
  }
  return out;
}

/**
 * A configuration file for `php-relaunch watch`, one target per service: its first pool with a
 * ping is the target's heartbeat, its other pools with one are its [[target.pool]]s.
 */
export function discoveryToml(found: readonly FoundService[], header: string): string {
  const parts = [
    `# ${header}`,
    "# Check it with: php-relaunch check-config --config <this file>",
    "",
    "[defaults]",
    '# mail_to = ["ops@example.com"]',
    "",
  ];
  const nextPort = statusPorts(found);
  for (const s of found) {
    const probe = probeOf(s);
    const status = probe.pool === null ? anyStatusOf(s) : statusOf(probe.pool);
    const target: Record<string, string | Record<string, string>[]> = {
      name: s.service,
      url: probe.url,
      service: s.service,
      "process_name": s.processName,
    };
    if (probe.pool !== null) target["pool_name"] = probe.pool.pool;
    if (s.pidFile !== null) target["pid_file"] = s.pidFile;
    if (s.configFile !== null) target["fpm_config"] = s.configFile;
    if (status !== null) target["status_url"] = status;
    const others = probe.pool === null ? [] : otherPools(s, probe.pool);
    // smol-toml writes a list of tables as [[target.pool]] after the target's own keys
    if (others.length > 0) target["pool"] = others;
    if (probe.pool === null) {
      parts.push(
        "# no pool has a ping.path: the probe goes through nginx's heartbeat vhost",
        "# (nginx/php-heartbeat.conf and php-heartbeat.php from php-relaunch's repository)",
      );
    }
    parts.push(...advice(s, probe.pool, nextPort), stringify({ target: [target] }).trimEnd(), "");
  }
  return parts.join("\n");
}
