/**
 * Child crash loops: at each step, the lines php-fpm's master added to its error log (or the
 * journal) since the last, the children that died on a signal counted by pool, and past
 * `warn_child_crashes` one alert and one incident of kind `child_crashes` naming the signal, the
 * count, the pool, the requests nginx lost at those seconds and, where systemd-coredump keeps
 * cores, the top of the newest one's stack. Never a restart: the master is fine, and respawns.
 */
import { type AlertIncident, ALERTMANAGER_REPEAT_MS } from "../alert/queue.ts";
import { uidOf } from "../fpm/accounts.ts";
import { type FpmConfig, readFpmConfig } from "../fpm/config.ts";
import { findCoredumpctl, newestCoreFrames } from "../fpm/core_dump.ts";
import { type NginxLost, readLostRequests } from "../fpm/nginx_lost.ts";
import { countChildDeaths } from "../record/metrics.ts";
import { formatLine, logger } from "../shared/log.ts";
import {
  crashCount,
  type CrashIncident,
  type CrashMemory,
  freshCrashMemory,
  judgeCrashes,
  quietMs,
} from "./crash_policy.ts";
import { logIncident, type TargetContext } from "./context.ts";
import type { Teller } from "./teller.ts";
import { crashRecord, errorLogOf, openedAlert, resolvedMessage } from "./crash_alert.ts";
import { CrashLog } from "./crash_log.ts";

/** php-fpm's configuration is read again at most this often (its error_log, pools, listen). */
const CONFIG_READ_MS = 30_000;
/** nginx's main configuration, for the user its log belongs to. */
const NGINX_CONF = "/etc/nginx/nginx.conf";

/** A target's watch of its php-fpm children's deaths. */
export class CrashWatch {
  private config: { at: number; value: FpmConfig | null } | null = null;
  /** coredumpctl's path once looked for (null: not installed). */
  private coredumpctl: string | null | undefined = undefined;
  /** When each open incident was last sent to Alertmanager, which needs it repeated. */
  private readonly repeatedAt = new Map<string, number>();

  /** php-fpm's error log (or the journal), read from where the last look left it. */
  private readonly log: CrashLog;

  constructor(private readonly ctx: TargetContext, private readonly teller: Teller) {
    this.log = new CrashLog(ctx);
  }

  /**
   * Reads what the log added since the last step and acts on it; `paused`: only counts the deaths
   * (the metric goes on, as probes do), and alerts nothing. Never throws.
   */
  async check(paused = false): Promise<void> {
    const limits = this.ctx.target.childCrashes;
    if (limits === undefined || limits.count === 0 || this.ctx.target.fpmConfig === null) return;
    try {
      await this.look(limits, paused);
    } catch (err) {
      logger.error("Cannot follow php-fpm's error log: {error}", {
        error: String(err),
        target: this.ctx.target.name,
      });
    }
  }

  private async look(limits: { count: number; windowMs: number }, paused: boolean): Promise<void> {
    const { deps, memory } = this.ctx;
    const config = await this.fpmConfig();
    const was = memory.childCrashes ?? freshCrashMemory();
    const { deaths, memory: read } = await this.log.newDeaths(config, was);
    memory.counters = countChildDeaths(memory.counters, deaths);
    if (paused) {
      memory.childCrashes = { ...read, pools: was.pools };
      return;
    }
    const now = deps.clock.now();
    const decision = judgeCrashes(was.pools, deaths, now, limits);
    memory.childCrashes = { ...read, pools: decision.pools };
    for (const o of decision.opened) await this.opened(o.pool, o.incident, o.crashes, config);
    for (const r of decision.resolved) await this.resolved(r.pool, r.incident, limits);
    this.repeatOpen(decision.pools, now);
  }

  private async fpmConfig(): Promise<FpmConfig | null> {
    const { deps, target } = this.ctx;
    const now = deps.clock.now();
    if (this.config !== null && now - this.config.at < CONFIG_READ_MS) return this.config.value;
    const value = target.fpmConfig === null ? null : await readFpmConfig(deps.fs, target.fpmConfig);
    this.config = { at: now, value };
    return value;
  }

  private incidentOf(i: CrashIncident, status: "firing" | "resolved"): AlertIncident {
    return {
      id: i.id,
      target: this.ctx.target.name,
      kind: "child_crashes",
      status,
      since: i.since,
      ...(status === "resolved" ? { endedAt: this.ctx.deps.clock.now() } : {}),
    };
  }

  /** One alert and one incident record for a pool whose crashes crossed the threshold. */
  private async opened(
    pool: string,
    incident: CrashIncident,
    crashes: readonly { at: number }[],
    config: FpmConfig | null,
  ): Promise<void> {
    const { target, deps, cfg } = this.ctx;
    const settings = config?.pools.find((p) => p.pool === pool) ?? null;
    const lost = await this.nginxLost(
      new Set(crashes.map((c) => Math.floor(c.at / 1000))),
      settings?.listen ?? null,
    );
    const frames = await this.coreFrames(incident.since);
    const { message, details } = openedAlert({
      pool,
      incident,
      fpmConfig: target.fpmConfig,
      errorLog: errorLogOf(config),
      nginxLog: target.childCrashes?.nginxErrorLog ?? null,
      lost,
      frames,
      quietMs: quietMs(target.childCrashes!),
    });
    logger.warn("{message}", { message, target: target.name });
    const now = deps.clock.now();
    this.repeatedAt.set(incident.id, now);
    this.teller.alerts.send({
      subject: "PHP children crashing",
      line: formatLine(now, cfg.hostname, message),
      details,
      incident: this.incidentOf(incident, "firing"),
    });
    await logIncident(
      this.ctx,
      crashRecord(this.ctx, pool, incident, "firing", message, config, {
        lost: "lost" in lost ? lost.lost : [],
        ...("error" in lost ? { lostError: lost.error } : {}),
        frames,
      }),
    );
  }

  /** The alert that a pool's crash loop is over, and its record. */
  private async resolved(
    pool: string,
    incident: CrashIncident,
    limits: { count: number; windowMs: number },
  ): Promise<void> {
    const { target, deps, cfg } = this.ctx;
    this.repeatedAt.delete(incident.id);
    const message = resolvedMessage(pool, incident, quietMs(limits));
    logger.info("{message}", { message, target: target.name });
    this.teller.alerts.send({
      subject: "PHP children crashes over",
      line: formatLine(deps.clock.now(), cfg.hostname, message),
      details: [`Pool: ${pool}`],
      incident: this.incidentOf(incident, "resolved"),
    });
    await logIncident(
      this.ctx,
      crashRecord(this.ctx, pool, incident, "resolved", message, await this.fpmConfig(), {
        lost: [],
        frames: [],
      }),
    );
  }

  /** Alertmanager lets a firing alert end by itself unless it is sent again. */
  private repeatOpen(pools: CrashMemory["pools"], now: number): void {
    const { cfg } = this.ctx;
    if (cfg.alertmanager === null) return;
    for (const [pool, p] of Object.entries(pools)) {
      if (p.incident === null) continue;
      const last = this.repeatedAt.get(p.incident.id);
      if (last !== undefined && now - last < ALERTMANAGER_REPEAT_MS) continue;
      this.repeatedAt.set(p.incident.id, now);
      this.teller.alerts.send({
        subject: "PHP children crashing",
        line: formatLine(
          now,
          cfg.hostname,
          `PHP pool ${pool}: ${crashCount(p.incident)} children crashed since ${
            new Date(p.incident.since).toISOString()
          }.`,
        ),
        details: [],
        incident: this.incidentOf(p.incident, "firing"),
        repeat: true,
      });
    }
  }

  /** What nginx's error log says was lost at `secondsSet`, read as www-data's file. */
  private async nginxLost(secondsSet: Set<number>, listen: string | null): Promise<NginxLost> {
    const { deps, target } = this.ctx;
    const path = target.childCrashes?.nginxErrorLog ?? null;
    if (path === null) return { lost: [] };
    const conf = await deps.fs.readTextFile(NGINX_CONF, 256 * 1024).catch(() => "");
    const user = /^\s*user\s+([^\s;]+)/m.exec(conf)?.[1] ?? "www-data";
    const uid = await uidOf(deps.fs, user);
    return await readLostRequests(
      deps.fs,
      path,
      uid === null ? [0] : [0, uid],
      secondsSet,
      listen,
    );
  }

  /** The newest core's top frames since `since`, where systemd-coredump is installed. */
  private async coreFrames(since: number): Promise<string[]> {
    const { deps, target } = this.ctx;
    if (this.coredumpctl === undefined) this.coredumpctl = await findCoredumpctl(deps.fs);
    if (this.coredumpctl === null) return [];
    return await newestCoreFrames(deps.runner, this.coredumpctl, target.fpm.processName, since);
  }
}
