/**
 * Step 3 of loading: the targets to watch as written, with the flags laid over them. The file's
 * [[target]]s, or the original's positional form read as a file of one target.
 */
import type { Rung } from "../act/restart.ts";
import { type Settings, stripUndefined } from "./fields.ts";
import { type ConfigFile, type FilePolicy, type FileTarget, WATCH_DEFAULTS } from "./file.ts";
import { cronDefaults, type Policy, policyOf } from "./policy_settings.ts";
import type { Mode } from "./settings.ts";
import { checkUrl } from "./urls.ts";

/** The timeout of the positional form when the command line gives none. */
export const DEFAULT_TIMEOUT_MS = 5000;

/** Another pool of the target's service, as written, its URLs checked. */
export interface PoolSpec {
  name: string;
  url: URL;
  status: URL | null;
  expect?: string | undefined;
  /** 0 or unset: the target's. */
  stuckAfterMs?: number | undefined;
}

/** A target as written, before its service is resolved. */
export interface TargetSpec {
  name: string | null;
  url: URL;
  /** The name of the pool `url` probes, when given. */
  poolName?: string | undefined;
  /** The service's other pools, probed and handled on their own. */
  pools: PoolSpec[];
  policy: Policy;
  timeoutMs: number;
  rungs: Rung[];
  startTimeoutMs: number;
  mailTo: string[];
  cgi: boolean;
  service?: string | undefined;
  processName?: string | undefined;
  cgiService?: string | undefined;
  cgiProcessName?: string | undefined;
  pidFile?: string | undefined;
  status: URL | null;
  fpmConfig?: string | undefined;
  expect?: string | undefined;
  extra: FilePolicy;
}

/**
 * Step 3: the targets to watch, from the file's [[target]]s, or from the original's positional
 * form read as a file of one target (named after its service) whose settings the cron form
 * fixes, as the original did. Flags override both.
 */
export function targetSpecs(
  mode: Mode,
  s: Settings,
  file: ConfigFile | null,
  configPath: string | null,
  issues: { add(...issues: string[]): void },
): TargetSpec[] {
  // what the file's [defaults] do not say, watch mode's defaults do
  const defaults: FilePolicy = { ...WATCH_DEFAULTS, ...file?.defaults };
  if (s.url === undefined) {
    return (file?.target ?? []).flatMap((t) =>
      specOf(t.name, t, { ...defaults, ...stripUndefined(t) }, s, `${configPath}: `, issues)
    );
  }
  // the positional form: its timeout is the command line's, not the file's [defaults]
  const timeoutMs = s.timeout ?? DEFAULT_TIMEOUT_MS;
  const one: FileTarget = { name: "", url: s.url.href, timeout: timeoutMs, "php_cgi": false };
  const settings: FilePolicy = mode === "watch"
    ? { ...defaults, ...stripUndefined(one) }
    : { ...defaults, ...stripUndefined(one), ...cronDefaults(timeoutMs) };
  // the cron form probes every timeout, as the original did, whatever --interval says
  const flags = mode === "watch" ? s : { ...s, interval: undefined };
  return specOf(null, { ...one, url: s.url }, settings, flags, "", issues);
}

/** One target's settings, the flags laid over them; none when its URLs are refused. */
function specOf(
  name: string | null,
  t: Omit<FileTarget, "name" | "url"> & { url: string | URL },
  p: FilePolicy,
  s: Settings,
  where: string,
  issues: { add(...issues: string[]): void },
): TargetSpec[] {
  const url = typeof t.url === "string" ? checkUrl(t.url, false) : t.url;
  const status = t.status_url === undefined ? null : checkUrl(t.status_url, true);
  const pools = (t.pool ?? []).map((p) => ({
    p,
    url: checkUrl(p.url, false),
    status: p.status_url === undefined ? null : checkUrl(p.status_url, true),
  }));
  const bad = [
    ...[url, status].filter((u) => typeof u === "string").map((u) =>
      `${where}target "${name}": ${u}`
    ),
    ...pools.flatMap(({ p, url, status }) =>
      [url, status].filter((u) => typeof u === "string").map((u) =>
        `${where}target "${name}": pool "${p.name}": ${u}`
      )
    ),
  ];
  if (bad.length > 0 || typeof url === "string" || typeof status === "string") {
    issues.add(...bad);
    return [];
  }
  return [{
    name,
    url,
    poolName: t.pool_name,
    pools: pools.map(({ p, url, status }) => ({
      name: p.name,
      url: url as URL,
      status: status as URL | null,
      expect: p.expect,
      stuckAfterMs: p.stuck_after,
    })),
    timeoutMs: s.timeout ?? p.timeout,
    policy: policyOf({ ...p, interval: s.interval ?? p.interval }),
    rungs: p.rungs,
    startTimeoutMs: p.start_timeout,
    mailTo: s.mailTo ?? p.mail_to,
    cgi: s.restartCgi ?? p.php_cgi,
    service: s.service ?? t.service,
    processName: s.processName ?? t.process_name,
    cgiService: s.cgiService ?? t.cgi_service,
    cgiProcessName: s.cgiProcessName ?? t.cgi_process_name,
    pidFile: t.pid_file,
    status: s.statusUrl ?? status,
    fpmConfig: t.fpm_config,
    expect: s.expect ?? t.expect,
    extra: p,
  }];
}
