/**
 * Reading php-fpm's own configuration (php-fpm.conf and the pool files it includes): where its
 * logs are and the pool settings that explain an outage. Read-only and forgiving: a file that
 * cannot be read leaves its settings out.
 */
import type { FcgiAddress, Fs } from "../shared/deps.ts";

/** The pool settings that matter when tuning, as written (null when not set). */
export interface PoolSettings {
  pool: string;
  pm: string | null;
  maxChildren: number | null;
  requestTerminateTimeout: string | null;
  requestSlowlogTimeout: string | null;
  listen: string | null;
  statusPath: string | null;
  statusListen: string | null;
  pingPath: string | null;
  slowlog: string | null;
  /** The user its workers run as (`user`), who may own its logs. */
  user?: string | null;
  /** The file that defines the pool's section, where a setting is to be added. */
  file?: string | null;
}

/** php-fpm's error log, its master's pid file and the pools it defines. */
export interface FpmConfig {
  errorLog: string | null;
  pid?: string | null;
  pools: PoolSettings[];
}

/** php-fpm.conf of a service: Debian's /etc/php/X.Y/fpm, RHEL's /etc, FreeBSD's /usr/local/etc. */
export function defaultFpmConfig(service: string): string | null {
  const debian = /^php(\d+\.\d+)-fpm$/.exec(service);
  if (debian) return `/etc/php/${debian[1]}/fpm/php-fpm.conf`;
  if (service === "php-fpm") return "/etc/php-fpm.conf";
  if (service === "php_fpm") return "/usr/local/etc/php-fpm.conf";
  return null;
}

/** The most of a service definition read: init scripts take a few KiB. */
const MAX_SERVICE_FILE = 256 * 1024;

/**
 * php-fpm.conf of a service as its definition starts it: a systemd unit's `--fpm-config` (or
 * `-y`), an init script's `CONFFILE=` (Debian's, and copies of it for more instances), else the
 * package's default ({@link defaultFpmConfig}). The master's title names the same file.
 */
export async function fpmConfigOf(fs: Fs, service: string): Promise<string | null> {
  const units = ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"];
  const scripts = ["/etc/init.d", "/etc/rc.d", "/usr/local/etc/rc.d"];
  const read = (path: string) => fs.readTextFile(path, MAX_SERVICE_FILE).catch(() => "");
  for (const dir of units) {
    const m = /^ExecStart=.*?\s(?:--fpm-config|-y)[= ]\s*(\/\S+)/m.exec(
      await read(`${dir}/${service}.service`),
    );
    if (m !== null) return m[1]!;
  }
  for (const dir of scripts) {
    const m = /^\s*CONFFILE=["']?(\/[^"'\s]+)/m.exec(await read(`${dir}/${service}`));
    if (m !== null) return m[1]!;
  }
  return defaultFpmConfig(service);
}

/** Where the usual packages keep php-fpm's pid file (Debian, RHEL, FreeBSD). */
export function defaultPidFile(service: string): string | null {
  if (/^php\d+(\.\d+)?-fpm$/.test(service)) return `/run/php/${service}.pid`;
  if (service === "php-fpm") return "/run/php-fpm/php-fpm.pid";
  if (service === "php_fpm") return "/var/run/php-fpm.pid";
  return null;
}

type Sections = Map<string, Map<string, string>>;

/** INI sections and keys, with `;` and `#` comments and quoted values; `files`: where each began. */
function parseIni(
  text: string,
  into: Sections,
  start: string,
  file: string,
  files: Map<string, string>,
): string {
  let section = start;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith(";") || line.startsWith("#")) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = head[1]!.trim();
      if (!into.has(section)) into.set(section, new Map());
      if (!files.has(section)) files.set(section, file);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    if (!into.has(section)) into.set(section, new Map());
    into.get(section)!.set(key, value);
  }
  return section;
}

/** The files an `include=` names: a path, or a folder with one `*` pattern in the file name. */
async function expandInclude(fs: Fs, pattern: string): Promise<string[]> {
  const slash = pattern.lastIndexOf("/");
  const dir = pattern.slice(0, slash);
  const name = pattern.slice(slash + 1);
  if (!name.includes("*")) return [pattern];
  const re = new RegExp(
    `^${name.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`,
  );
  return (await fs.listDir(dir)).filter((n) => re.test(n)).sort().map((n) => `${dir}/${n}`);
}

/** Reads `path` and its includes (one level, as Debian and RHEL use them). */
export async function readFpmConfig(fs: Fs, path: string): Promise<FpmConfig | null> {
  const sections: Sections = new Map([["global", new Map()]]);
  let text: string;
  try {
    text = await fs.readTextFile(path);
  } catch {
    return null;
  }
  const files = new Map<string, string>([["global", path]]);
  let section = parseIni(text, sections, "global", path, files);
  const includes = [...text.matchAll(/^\s*include\s*=\s*"?([^"\n]+?)"?\s*$/gm)].map((m) => m[1]!);
  for (const pattern of includes) {
    for (const file of await expandInclude(fs, pattern)) {
      const included = await fs.readTextFile(file).catch(() => null);
      if (included !== null) section = parseIni(included, sections, section, file, files);
    }
  }
  const pools: PoolSettings[] = [];
  for (const [name, keys] of sections) {
    if (name === "global") continue;
    const get = (key: string) => keys.get(key)?.replaceAll("$pool", name) ?? null;
    const children = Number(get("pm.max_children"));
    pools.push({
      pool: name,
      pm: get("pm"),
      maxChildren: Number.isInteger(children) && children > 0 ? children : null,
      requestTerminateTimeout: get("request_terminate_timeout"),
      requestSlowlogTimeout: get("request_slowlog_timeout"),
      listen: get("listen"),
      statusPath: get("pm.status_path"),
      statusListen: get("pm.status_listen"),
      pingPath: get("ping.path"),
      slowlog: get("slowlog"),
      user: get("user"),
      file: files.get(name) ?? null,
    });
  }
  const global = sections.get("global");
  return { errorLog: global?.get("error_log") ?? null, pid: global?.get("pid") ?? null, pools };
}

/**
 * The pool a target watches: the one the status page names, else the one whose `listen` is the
 * probe's address, else the only one.
 */
export function choosePool(
  config: FpmConfig,
  statusPool: string | null,
  listen: string | null,
): PoolSettings | null {
  const byName = config.pools.find((p) => p.pool === statusPool);
  if (byName) return byName;
  const byListen = config.pools.find((p) => listen !== null && p.listen === listen);
  if (byListen) return byListen;
  return config.pools.length === 1 ? config.pools[0]! : null;
}

/** Whether a duration setting of php-fpm ("0", "30s", "5m", "300") is off. */
export function isOff(value: string | null): boolean {
  return value === null || /^0+[smhd]?$/.test(value.trim());
}

/** Whether php-fpm's `listen` value (a path, `port`, `host:port`, `[::1]:port`) is `address`. */
export function listensOn(listen: string, address: FcgiAddress): boolean {
  if (listen.startsWith("/")) return address.transport === "unix" && address.path === listen;
  const m = /^(?:(.*):)?(\d+)$/.exec(listen.trim());
  if (m === null || address.transport !== "tcp" || Number(m[2]) !== address.port) return false;
  const host = (m[1] ?? "").replace(/^\[(.*)\]$/, "$1");
  // no host, or a wildcard: every address of the host
  return host === "" || host === "*" || host === "0.0.0.0" || host === "::" ||
    host === address.hostname.replace(/^\[(.*)\]$/, "$1");
}

/**
 * The pool whose status page answers at `address` (its `pm.status_listen`, or its `listen` when
 * it serves its status itself), or null when the configuration does not say.
 */
export function poolAt(config: FpmConfig, address: FcgiAddress): string | null {
  const byStatus = config.pools.find((p) => p.statusListen && listensOn(p.statusListen, address));
  if (byStatus) return byStatus.pool;
  const byListen = config.pools.find((p) =>
    p.statusPath && !p.statusListen && p.listen && listensOn(p.listen, address)
  );
  return byListen?.pool ?? null;
}
