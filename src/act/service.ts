/** Finds the php-fpm service, its init system, its process name and the tools to handle it. */
import type { Fs, Host } from "../shared/deps.ts";

/** How services are started on this host. */
export type InitSystem = "systemd" | "sysv" | "openrc" | "freebsd";

/** Every init system, for validation and help. */
export const INIT_SYSTEMS: readonly InitSystem[] = ["systemd", "sysv", "openrc", "freebsd"];

/** The absolute paths of the external programs we run (null: not on this host). */
export interface Tools {
  service: string | null;
  systemctl: string | null;
  rcService: string | null;
  /** The process table: what the kernel says of each php-fpm process. */
  ps: string;
  /** procps' or the base system's kill, to signal processes by pid (Deno.kill needs every run right). */
  kill: string;
  /** iproute2's ss, for a unix socket's accept queue (Linux only; null: not there). */
  ss: string | null;
  /** The kernel log, for deaths by the OOM killer (null: not there). */
  journalctl: string | null;
  dmesg: string | null;
}

/** One service we may relaunch: its name for the init system and its processes' name. */
export interface ServiceTarget {
  service: string;
  /** The kernel's process name (comm) of the master and workers, for `ps -C`. */
  processName: string;
}

/**
 * The standard folders, searched in this order, so a bare cron PATH does not matter
 * (/usr/local for FreeBSD's packages).
 */
export const SEARCH_DIRS = [
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
  "/usr/local/sbin",
  "/usr/local/bin",
] as const;

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
  "/etc/rc.d",
  "/usr/local/etc/rc.d",
] as const;

const FPM_SERVICE = /^(php(?:\d+(?:\.\d+)?)?[-_]fpm)(?:\.service)?$/;
const CGI_SERVICE = /^(php(?:\d+(?:\.\d+)?)?[-_]cgi)(?:\.service)?$/;

/**
 * The running init system: FreeBSD by the OS; systemd when /run/systemd/system exists (the
 * sd_booted convention, not merely systemctl being installed); OpenRC when /run/openrc exists;
 * sysvinit's `service` otherwise.
 */
export async function detectInit(fs: Fs, host: Host): Promise<InitSystem> {
  if (host.os() === "freebsd") return "freebsd";
  if (await fs.exists("/run/systemd/system")) return "systemd";
  if (await fs.exists("/run/openrc")) return "openrc";
  return "sysv";
}

async function findTool(fs: Fs, name: string): Promise<string | null> {
  for (const path of toolPaths(name)) {
    if (await fs.isExecutable(path)) return path;
  }
  return null;
}

/** The program each init system is driven with. */
const INIT_TOOL: Record<InitSystem, keyof Tools & ("service" | "systemctl" | "rcService")> = {
  systemd: "systemctl",
  sysv: "service",
  openrc: "rcService",
  freebsd: "service",
};

const TOOL_NAME = { service: "service", systemctl: "systemctl", rcService: "rc-service" };

/** The programs {@link findTools} looks for, in the order of {@link Tools}' fields. */
export const TOOL_PROGRAMS = [
  "service",
  "systemctl",
  "rc-service",
  "ps",
  "kill",
  "ss",
  "journalctl",
  "dmesg",
] as const;

/** Where php-fpm's binary may be, by its process name (php-fpm8.2 on Debian, php-fpm elsewhere). */
export function fpmBinaryCandidates(processName: string): string[] {
  return ["/usr/sbin", "/usr/local/sbin", "/sbin"].map((dir) => `${dir}/${processName}`);
}

/** php-fpm's binary for processes named `processName`, or null when none is there. */
export async function fpmBinary(
  fs: Pick<Fs, "isExecutable">,
  processName: string,
): Promise<string | null> {
  for (const candidate of fpmBinaryCandidates(processName)) {
    if (await fs.isExecutable(candidate)) return candidate;
  }
  return null;
}

/** Locates the programs we need; a missing one is named in `missing`. */
export async function findTools(
  fs: Fs,
  init: InitSystem,
): Promise<{ tools: Tools; missing: string[] }> {
  const [service, systemctl, rcService, ps, kill, ss, journalctl, dmesg] = await Promise.all(
    TOOL_PROGRAMS.map((name) => findTool(fs, name)),
  );
  const tools = {
    service: service ?? null,
    systemctl: systemctl ?? null,
    rcService: rcService ?? null,
    ps: ps ?? "",
    kill: kill ?? "",
    ss: ss ?? null,
    journalctl: journalctl ?? null,
    dmesg: dmesg ?? null,
  };
  const missing: string[] = [];
  const initTool = INIT_TOOL[init];
  if (tools[initTool] === null) missing.push(TOOL_NAME[initTool]);
  if (!ps) missing.push("ps");
  if (!kill) missing.push("kill");
  return { tools, missing };
}

/** A command to run: absolute program and arguments. */
export type Command = readonly [string, readonly string[]];

/** The argument vectors that start, and that restart, `service` on `init`. */
export function serviceCommands(
  init: InitSystem,
  tools: Tools,
  service: string,
): { start: Command[]; restart: Command[] } {
  switch (init) {
    case "systemd": {
      const systemctl = tools.systemctl ?? "/usr/bin/systemctl";
      // after SIGKILL the unit is "failed"; repeated starts can also hit its start rate limit
      const reset: Command = [systemctl, ["reset-failed", service]];
      return {
        start: [reset, [systemctl, ["start", service]]],
        restart: [reset, [systemctl, ["restart", service]]],
      };
    }
    case "openrc": {
      const rc = tools.rcService ?? "/sbin/rc-service";
      return { start: [[rc, [service, "start"]]], restart: [[rc, [service, "restart"]]] };
    }
    case "freebsd": {
      // "one...": act even when php_fpm_enable is not set in rc.conf
      const svc = tools.service ?? "/usr/sbin/service";
      return {
        start: [[svc, [service, "onestart"]]],
        restart: [[svc, [service, "onerestart"]]],
      };
    }
    case "sysv": {
      const svc = tools.service ?? "/usr/sbin/service";
      return { start: [[svc, [service, "start"]]], restart: [[svc, [service, "restart"]]] };
    }
  }
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

/** Whether a service called exactly `name` is defined for any init system. */
export async function serviceExists(fs: Fs, name: string): Promise<boolean> {
  for (const dir of SERVICE_DIRS) {
    const names = await fs.listDir(dir);
    if (names.includes(name) || names.includes(`${name}.service`)) return true;
  }
  return false;
}

/** Installed php-fpm services (`php8.2-fpm`, `php-fpm`, `php5-fpm`, FreeBSD's `php_fpm`...). */
export function findFpmServices(fs: Fs): Promise<string[]> {
  return findServices(fs, FPM_SERVICE);
}

/** Installed php-cgi services (none on a stock Debian; sites that run one add an init script). */
export function findCgiServices(fs: Fs): Promise<string[]> {
  return findServices(fs, CGI_SERVICE);
}

/**
 * The process name a service's processes run under: Debian's `php8.2-fpm` runs `php-fpm8.2`
 * (and `php8.2-cgi` runs `php-cgi8.2`); FreeBSD's `php_fpm` runs `php-fpm`; `php-fpm` and the
 * legacy `php5-fpm` run as themselves.
 */
export function processNameFor(service: string): string {
  const versioned = /^php(\d+\.\d+)-(fpm|cgi)$/.exec(service);
  if (versioned) return `php-${versioned[2]}${versioned[1]}`;
  return service.replace("_", "-");
}
