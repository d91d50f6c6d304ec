/** Finds the php-fpm service, its init system, its process name and the tools to handle it. */
import type { Fs } from "./deps.ts";

/** How services are started on this host. */
export type InitSystem = "systemd" | "sysv";

/** The absolute paths of the external programs we run. */
export interface Tools {
  service: string | null;
  systemctl: string | null;
  pgrep: string;
  pkill: string;
}

/** One service we may relaunch: its name for the init system and its processes' name. */
export interface ServiceTarget {
  service: string;
  /** The kernel's process name (comm) of the master and workers, for `pgrep -x`/`pkill -x`. */
  processName: string;
}

/** The standard folders, searched in this order, so a bare cron PATH does not matter. */
export const SEARCH_DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] as const;

/** Every absolute path a tool may be run from: what the embedded run permission must list. */
export function toolPaths(name: string): string[] {
  return SEARCH_DIRS.map((dir) => `${dir}/${name}`);
}

/** Where init systems keep service definitions. */
export const SERVICE_DIRS = [
  "/etc/init.d",
  "/etc/systemd/system",
  "/lib/systemd/system",
  "/usr/lib/systemd/system",
] as const;

const FPM_SERVICE = /^(php(?:\d+(?:\.\d+)?)?-fpm)(?:\.service)?$/;
const CGI_SERVICE = /^(php(?:\d+(?:\.\d+)?)?-cgi)(?:\.service)?$/;

/** Systemd is running when this folder exists (the sd_booted convention), not when systemctl does. */
export async function detectInit(fs: Fs): Promise<InitSystem> {
  return (await fs.exists("/run/systemd/system")) ? "systemd" : "sysv";
}

async function findTool(fs: Fs, name: string): Promise<string | null> {
  for (const path of toolPaths(name)) {
    if (await fs.isExecutable(path)) return path;
  }
  return null;
}

/** Locates the programs we need; a missing one is reported in `missing`. */
export async function findTools(
  fs: Fs,
  init: InitSystem,
): Promise<{ tools: Tools; missing: string[] }> {
  const [service, systemctl, pgrep, pkill] = await Promise.all(
    ["service", "systemctl", "pgrep", "pkill"].map((name) => findTool(fs, name)),
  );
  const missing: string[] = [];
  if (init === "systemd" && !systemctl) missing.push("systemctl");
  if (init === "sysv" && !service) missing.push("service");
  if (!pgrep) missing.push("pgrep");
  if (!pkill) missing.push("pkill");
  return {
    tools: {
      service: service ?? null,
      systemctl: systemctl ?? null,
      pgrep: pgrep ?? "",
      pkill: pkill ?? "",
    },
    missing,
  };
}

async function findServices(fs: Fs, pattern: RegExp): Promise<string[]> {
  const found = new Set<string>();
  for (const dir of SERVICE_DIRS) {
    for (const name of await fs.listDir(dir)) {
      const match = pattern.exec(name);
      if (match?.[1]) found.add(match[1]);
    }
  }
  return [...found].sort();
}

/** Whether a service called exactly `name` is defined for sysvinit or systemd. */
export async function serviceExists(fs: Fs, name: string): Promise<boolean> {
  for (const dir of SERVICE_DIRS) {
    const names = await fs.listDir(dir);
    if (names.includes(name) || names.includes(`${name}.service`)) return true;
  }
  return false;
}

/** Installed php-fpm services (`php8.2-fpm`, `php-fpm`, `php5-fpm`, ...). */
export function findFpmServices(fs: Fs): Promise<string[]> {
  return findServices(fs, FPM_SERVICE);
}

/** Installed php-cgi services (none on a stock Debian; sites that run one add an init script). */
export function findCgiServices(fs: Fs): Promise<string[]> {
  return findServices(fs, CGI_SERVICE);
}

/**
 * The process name a service's processes run under: Debian's `php8.2-fpm` runs `php-fpm8.2`
 * (and `php8.2-cgi` runs `php-cgi8.2`); `php-fpm` and the legacy `php5-fpm` run as themselves.
 */
export function processNameFor(service: string): string {
  const versioned = /^php(\d+\.\d+)-(fpm|cgi)$/.exec(service);
  if (versioned) return `php-${versioned[2]}${versioned[1]}`;
  return service;
}
