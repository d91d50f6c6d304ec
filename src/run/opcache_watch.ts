/**
 * OPcache's watch: on a healthy step, at most every `opcache_interval`, php-relaunch's status
 * script is asked of the target's php-fpm over FastCGI (one ask per master: OPcache's memory is
 * the master's, shared by its pools), its state kept for the gauges, and what comes before a slow
 * site warned early. What a worker answers only ever warns: it never decides a restart.
 */
import { fcgiTargetOf } from "../probe/fcgi.ts";
import { fcgiUrl, opcacheScriptProblem } from "../fpm/discovery.ts";
import { choosePool, readFpmConfig } from "../fpm/config.ts";
import {
  OPCACHE_SCRIPT,
  type OpcacheStatus,
  opcacheWarnings,
  readOpcache,
} from "../fpm/opcache.ts";
import type { OpcacheCounters } from "../record/metrics.ts";
import type { FcgiAddress } from "../shared/deps.ts";
import { oneLine } from "../shared/redact.ts";
import { megabytesTenths as mb } from "../shared/memory_units.ts";
import { logger } from "../shared/log.ts";
import type { TargetContext } from "./context.ts";
import type { Prober } from "./prober.ts";

/** How a problem that is OPcache's own answer begins. */
const OFF = "OPcache is off: ";
/** The most of a problem kept in the state file. */
const MAX_PROBLEM = 256;

/** The most one ask may take: the script answers in milliseconds, a busy pool may not. */
const OPCACHE_LIMIT_MS = 3000;

/** Asks OPcache's state of one target's master, and warns early of what it says. */
export class OpcacheWatch {
  /** The FastCGI address asked, once found (null: none). */
  private address: FcgiAddress | null | undefined;

  constructor(private readonly ctx: TargetContext, private readonly prober: Prober) {}

  /** Asks OPcache's state when it is due; never throws, never restarts anything. */
  async check(): Promise<void> {
    const { target, deps, memory } = this.ctx;
    const every = target.opcache?.intervalMs ?? 0;
    const now = deps.clock.now();
    const was = memory.counters.opcache;
    if (every === 0 || (was !== undefined && now - was.at < every && now >= was.at)) return;
    // php-fpm runs what is at the path: only a script of root's alone is asked for. Without it
    // OPcache is not watched, quietly (discover says where it is missing)
    const missing = await opcacheScriptProblem(deps.fs, OPCACHE_SCRIPT);
    const asked = missing ?? await this.ask();
    const kept: OpcacheCounters = {
      at: now,
      readAt: was?.readAt ?? null,
      status: was?.status ?? null,
      pendingSince: was?.pendingSince ?? null,
      problem: null,
    };
    if (typeof asked === "string") {
      // OPcache off is an answer: its old figures are no longer of this php-fpm
      const off = asked.startsWith(OFF);
      const problem = asked.slice(0, MAX_PROBLEM);
      memory.counters = {
        ...memory.counters,
        opcache: off
          ? { ...kept, status: null, pendingSince: null, problem }
          : { ...kept, problem },
      };
      // a problem is said when it begins (the state file carries it across cron runs)
      const level = was?.problem === problem || missing !== null ? "debug" : "info";
      logger[level]("OPcache not read: {why}.", { why: problem, target: target.name });
      return;
    }
    const current = asked;
    const pendingSince = current.restartPending ? (kept.pendingSince ?? now) : null;
    memory.counters = {
      ...memory.counters,
      opcache: { ...kept, readAt: now, status: current, pendingSince },
    };
    this.warn(kept.status, current, pendingSince, now);
  }

  /** OPcache's state, or why there is none. */
  private async ask(): Promise<OpcacheStatus | string> {
    const { deps } = this.ctx;
    const address = await this.addressOf();
    if (address === null) {
      return "no FastCGI address of php-fpm's pools is known (a fcgi:// heartbeat, or listen in php-fpm.conf)";
    }
    const read = await readOpcache(
      { address, path: OPCACHE_SCRIPT, query: "" },
      Math.min(this.ctx.target.timeoutMs, OPCACHE_LIMIT_MS),
      deps.fcgiGet,
    );
    if (typeof read === "string") return oneLine(read);
    return read.on ? read.status : `${OFF}${read.why}`;
  }

  /**
   * Where the master's pools listen: the heartbeat's own FastCGI address, else the target's pool
   * (or the first) in php-fpm.conf. Looked up once.
   */
  private async addressOf(): Promise<FcgiAddress | null> {
    if (this.address !== undefined) return this.address;
    const { target, deps } = this.ctx;
    let address: FcgiAddress | null = target.fcgi?.address ?? null;
    if (address === null && target.fpmConfig !== null) {
      const config = await readFpmConfig(deps.fs, target.fpmConfig);
      const pool = config === null
        ? null
        : choosePool(config, target.poolName, null) ?? config.pools.find((p) => p.listen);
      const url = fcgiUrl(pool?.listen ?? null, OPCACHE_SCRIPT);
      const parsed = url === null ? null : fcgiTargetOf(new URL(url));
      address = parsed === null || typeof parsed === "string" ? null : parsed.address;
    }
    this.address = address;
    return address;
  }

  private warn(
    previous: OpcacheStatus | null,
    current: OpcacheStatus,
    pendingSince: number | null,
    now: number,
  ): void {
    const { target } = this.ctx;
    const warnings = opcacheWarnings(
      previous,
      current,
      pendingSince,
      now,
      target.opcache?.hitDropPoints ?? 0,
    );
    const lookups = current.hits + current.misses;
    for (const w of warnings) {
      // the log line and the alert's subject line name the setting, not only its details
      const message = w.setting === null ? w.message : `${w.message}; raise ${w.setting}`;
      this.prober.warnOnce({ kind: w.kind, message }, [
        `OPcache: ${mb(current.usedBytes)} used, ${mb(current.freeBytes)} free, ${
          mb(current.wastedBytes)
        } wasted (${
          current.wastedPercent.toFixed(1)
        }%); ${current.cachedKeys} of ${current.maxCachedKeys} keys, ${current.cachedScripts} scripts; hit rate ${
          lookups === 0 ? "-" : `${((current.hits / lookups) * 100).toFixed(1)}%`
        }; ${current.oomRestarts} OOM and ${current.hashRestarts} hash restarts`,
        `Settings: opcache.memory_consumption = ${
          current.ini.memoryConsumptionMb ?? "?"
        }, opcache.max_accelerated_files = ${
          current.ini.maxAcceleratedFiles ?? "?"
        }, opcache.interned_strings_buffer = ${
          current.ini.internedStringsBufferMb ?? "?"
        }, opcache.max_wasted_percentage = ${current.ini.maxWastedPercentage ?? "?"}`,
        ...(w.setting === null ? [] : [`Setting to raise: ${w.setting}: ${w.advice}`]),
        ...(current.iniMismatch
          ? [
            "opcache.memory_consumption differs between php.ini and the pool (php_admin_value): OPcache's memory is allocated once, by the master, from php.ini",
          ]
          : []),
        "Nothing was restarted: this is an early warning.",
      ], "PHP OPcache warning");
    }
  }
}
