/**
 * config/ owns turning the command line, the environment and the configuration file into one
 * validated, frozen {@link Config}: the only stage that validates input. It may import the
 * stages below it (fpm/, act/, probe/, shared/), never run/, alert/ or record/, which use it.
 *
 * This module: what a validated configuration is, and where its files go.
 */
import type { InitSystem, ServiceTarget, Tools } from "../act/service.ts";
import type { Rung } from "../act/restart.ts";
import type { WarnLimits } from "../fpm/status_page.ts";
import type { MemoryLimits } from "../fpm/memory.ts";
import type { FcgiTarget, MailRoute } from "../shared/deps.ts";
import type { Policy } from "./policy_settings.ts";
import type { FleetSettings } from "./fleet_settings.ts";
import type { BalancerSettings } from "./balancer_settings.ts";
import type { Deadman } from "./deadman_settings.ts";

/** What one invocation does. */
export type Mode =
  /** Watch for one scheduler period, restarting on failure (the cron form). */
  | "minute"
  /** One probe; the exit code is the verdict. */
  | "once"
  /** Validate and print the resolved settings. */
  | "check"
  /** Watch until stopped (the service form). */
  | "watch"
  /** Forget giving up and the restart history. */
  | "reset"
  /** Summarise the incident log. */
  | "report"
  /** What each target is doing now, from the state files. */
  | "status"
  /** Hold restarts and alerts for a while (a deploy, a repair by hand). */
  | "pause"
  /** End a pause. */
  | "resume"
  /** Find every php-fpm and its pools; print them, or a configuration for them. */
  | "discover";

/** The settings as the command line gave them, before validation (all strings). */
export interface RawSettings {
  url?: string | undefined;
  timeout?: string | undefined;
  interval?: string | undefined;
  runFor?: string | undefined;
  mailTo?: string | undefined;
  restartCgi?: string | boolean | undefined;
  service?: string | undefined;
  processName?: string | undefined;
  cgiService?: string | undefined;
  cgiProcessName?: string | undefined;
  restart?: boolean | undefined;
  config?: string | undefined;
  logFile?: string | undefined;
  logFormat?: string | undefined;
  lockFile?: string | undefined;
  stateDir?: string | undefined;
  init?: string | undefined;
  smtpHost?: string | undefined;
  smtpPort?: string | undefined;
  mailFrom?: string | undefined;
  verbose?: boolean | undefined;
  /** `reset [target]`. */
  commandTarget?: string | undefined;
  pauseFor?: string | undefined;
  reason?: string | undefined;
  auto?: boolean | undefined;
  statusUrl?: string | undefined;
  expect?: string | undefined;
  mailTransport?: string | undefined;
  smtpTls?: string | undefined;
  smtpUser?: string | undefined;
  smtpPasswordFile?: string | undefined;
  webhook?: string | undefined;
  /** `--deadman-url`: the dead-man's switch's push URL. */
  deadmanUrl?: string | undefined;
  metricsFile?: string | undefined;
  metricsListen?: string | undefined;
  /** `report --since`. */
  since?: string | undefined;
  /** `report --format`. */
  format?: string | undefined;
}

/** How one pool of a service is probed: its heartbeat, and its status page when it has one. */
export interface PoolProbe {
  /** The pool's name, as in php-fpm's [section]. */
  readonly name: string;
  readonly url: URL;
  /** Set when the probe goes straight to php-fpm over FastCGI (`url` is fcgi:// or fcgi+unix://). */
  readonly fcgi: FcgiTarget | null;
  /** What a FastCGI probe's body must start with ("" for anything). */
  readonly expect: string;
  /** php-fpm's status page of this pool, read over FastCGI. */
  readonly status: FcgiTarget | null;
  /** True when the status page is served by the pool's own workers (no pm.status_listen). */
  readonly statusOnPool: boolean;
  /** A worker on one request this long, in a failing pool, is stuck (the kill_stuck rung). */
  readonly stuckAfterMs: number;
}

/** The pool a target's own heartbeat probes, as one of its pools. */
export function mainPool(t: Target): PoolProbe {
  return {
    name: t.poolName,
    url: t.url,
    fcgi: t.fcgi,
    expect: t.expect,
    status: t.status,
    statusOnPool: t.statusOnPool,
    stuckAfterMs: t.stuckAfterMs,
  };
}

/** One watched heartbeat and the service it restarts. */
export interface Target {
  /** Names the target in logs, its state file and `reset` (the service, in the cron form). */
  readonly name: string;
  readonly url: URL;
  readonly timeoutMs: number;
  readonly policy: Policy;
  /** The restart ladder, gentlest first. */
  readonly rungs: readonly Rung[];
  /** How long each rung has to make the heartbeat healthy. */
  readonly startTimeoutMs: number;
  readonly fpm: ServiceTarget;
  /** Set when php-cgi is relaunched too (the original's 4th argument). */
  readonly cgi: ServiceTarget | null;
  /** php-fpm's pid file: its master, whose process group is the pool. */
  readonly pidFile: string | null;
  readonly mailTo: readonly string[];
  readonly lockFile: string;
  readonly stateFile: string;
  /** Set when the probe goes straight to php-fpm over FastCGI (`url` is fcgi:// or fcgi+unix://). */
  readonly fcgi: FcgiTarget | null;
  /** What a FastCGI probe's body must start with ("" for anything). */
  readonly expect: string;
  /** php-fpm's status page, read over FastCGI: early warnings, the hang check, evidence. */
  readonly status: FcgiTarget | null;
  /** True when the status page is served by the pool's own workers (no pm.status_listen). */
  readonly statusOnPool: boolean;
  /** The name of the pool `url` probes ("main" when the configuration does not say). */
  readonly poolName: string;
  /**
   * The service's other pools: each is probed too, and one that fails while another answers is
   * handled on its own (its stuck workers killed), the service restarted only when all fail.
   */
  readonly pools: readonly PoolProbe[];
  /** php-fpm.conf, for the pool's settings and logs in the evidence. */
  readonly fpmConfig: string | null;
  /** A worker on one request this long, in a failing pool, is stuck (the kill_stuck rung). */
  readonly stuckAfterMs: number;
  readonly warn: WarnLimits;
  /** The memory warnings' limits (KiB; 0: off). */
  readonly memoryWarn: MemoryLimits;
  /** The same early warning is repeated at most this often. */
  readonly warnEveryMs: number;
  /** Children that crash in a loop (`warn_child_crashes`; count 0: off). */
  readonly childCrashes?: {
    readonly count: number;
    readonly windowMs: number;
    /** nginx's error log, for the requests lost at the crashes (null: none). */
    readonly nginxErrorLog: string | null;
  };
  /**
   * OPcache's watch: its status script asked every `intervalMs` (0, or absent: never), a fall of
   * its hit rate by `hitDropPoints` percentage points warned (0: not).
   */
  readonly opcache?: { readonly intervalMs: number; readonly hitDropPoints: number };
}

/** Everything a run needs, validated. */
export interface Config {
  readonly mode: Mode;
  readonly targets: readonly Target[];
  /** How long a scheduled run lasts: the scheduler's period. */
  readonly runMs: number;
  /** `--once --restart`: act on a php-fpm failure even in a single probe. */
  readonly restartOnOnce: boolean;
  /** The configuration file read, or null. */
  readonly configFile: string | null;
  readonly init: InitSystem;
  readonly tools: Tools;
  readonly logFile: string;
  readonly logFormat: "text" | "json";
  readonly stateDir: string;
  /** Where services' locks are (shared by cron runs, watch and reset). */
  readonly lockDir: string;
  readonly mailFrom: string;
  readonly mail: MailRoute;
  /** Every alert is also POSTed here as JSON (Slack-compatible `text`), when set. */
  readonly webhook: URL | null;
  /**
   * The configuration `discover` wrote for `--auto` (or `auto = true`), to tell when php-fpm's
   * pools change; null without discovery.
   */
  readonly discovered: string | null;
  /** Incidents are also posted to this Alertmanager (its base URL), when set. */
  readonly alertmanager: URL | null;
  /** The dead-man's switch pinged after each cron run and every so often in watch mode. */
  readonly deadman: Deadman | null;
  /** A node_exporter textfile written after every run (cron) or every 15 s (watch). */
  readonly metricsFile: string | null;
  /** Watch mode's /metrics endpoint, on loopback only. */
  readonly metricsListen: { readonly hostname: string; readonly port: number } | null;
  /** Watch mode's HAProxy agent-check (`[balancer]`); absent or null: none. */
  readonly balancer?: BalancerSettings | null;
  readonly verbose: boolean;
  readonly hostname: string;
  /** `reset`: the target to re-arm, or null for all. */
  readonly commandTarget: string | null;
  /** `pause`: how long (null: the target's pause_default), and why. `resume`: why. */
  readonly pause: { readonly forMs: number | null; readonly reason: string | null };
  /** `report`: how far back, and text or JSON (`status` too). */
  readonly report: { readonly sinceMs: number; readonly format: "text" | "json" };
  /** `[fleet]`: the restart cap across servers, in etcd; absent or null: none. */
  readonly fleet?: FleetSettings | null;
}

/** Environment variables read for mail settings; flags override them. */
export const ENV = {
  smtpHost: "PHP_RELAUNCH_SMTP_HOST",
  smtpPort: "PHP_RELAUNCH_SMTP_PORT",
  mailFrom: "PHP_RELAUNCH_MAIL_FROM",
  smtpUser: "PHP_RELAUNCH_SMTP_USER",
  /** The SMTP password: from the environment (or a file), never from the command line. */
  smtpPassword: "PHP_RELAUNCH_SMTP_PASSWORD",
  webhook: "PHP_RELAUNCH_WEBHOOK",
  /** The dead-man's switch's push URL, whose path is a secret (kept out of `ps`). */
  deadmanUrl: "PHP_RELAUNCH_DEADMAN_URL",
} as const;

/** The state file of target `name` in the state folder `dir`. */
export function statePath(dir: string, name: string): string {
  return `${dir}/${name}.json`;
}

/** The pause of target `name`, beside its state: written by `pause`, read by every run. */
export function pausePath(dir: string, name: string): string {
  return `${dir}/${name}.pause`;
}

/** The incident log of a state folder. */
export function incidentsPath(stateDir: string): string {
  return `${stateDir}/incidents.jsonl`;
}

/** The folder of a state folder where alerts that could not be delivered wait. */
export function outboxPath(stateDir: string): string {
  return `${stateDir}/outbox`;
}

/**
 * A service's lock in the lock folder: one per service, so that two crontab lines for two PHP
 * versions do not block each other, while a cron run and watch mode for one service do.
 */
export function lockPath(lockDir: string, service: string): string {
  return `${lockDir}/php-relaunch-${service}.lock`;
}
