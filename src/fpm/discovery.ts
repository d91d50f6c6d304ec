/**
 * What php-fpm this host runs, found without any configuration: every installed php-fpm service,
 * its processes' name, its master's pid file, its configuration file, and every pool with the
 * settings that decide how it can be watched (listen, ping.path, the status page).
 */
import { findFpmServices, processNameFor } from "../act/service.ts";
import type { Fs } from "../shared/deps.ts";
import { defaultPidFile, fpmConfigOf, type PoolSettings, readFpmConfig } from "./config.ts";

/** One php-fpm service, as found. */
export interface FoundService {
  service: string;
  processName: string;
  /** php-fpm.conf, or null when this kind of host keeps it where we do not know. */
  configFile: string | null;
  /** The master's pid file, from php-fpm.conf's `pid` or the package's default. */
  pidFile: string | null;
  /** Its pools; empty when php-fpm.conf could not be read. */
  pools: PoolSettings[];
}

/** Every php-fpm service installed, with its pools, in the order of their names. */
export async function discoverFpm(fs: Fs): Promise<FoundService[]> {
  const services = (await findFpmServices(fs)).sort();
  return await Promise.all(services.map(async (service) => {
    const configFile = await fpmConfigOf(fs, service);
    const config = configFile === null ? null : await readFpmConfig(fs, configFile);
    return {
      service,
      processName: processNameFor(service),
      configFile,
      pidFile: config?.pid ?? defaultPidFile(service),
      pools: config?.pools ?? [],
    };
  }));
}

/** How a pool can be probed over FastCGI without nginx: its listen address and ping.path. */
export function fcgiUrl(listen: string | null, path: string | null): string | null {
  if (listen === null || path === null || !path.startsWith("/")) return null;
  if (listen.startsWith("/")) return `fcgi+unix://${listen}${path}`;
  // "9000", "127.0.0.1:9000", "[::1]:9000"; a wildcard address is reached on loopback
  const port = /^(?:(.*):)?(\d+)$/.exec(listen);
  if (!port) return null;
  const host = !port[1] || port[1] === "0.0.0.0" || port[1] === "*" ? "127.0.0.1" : port[1];
  return `fcgi://${host}:${port[2]}${path}`;
}

/**
 * Why php-relaunch's OPcache status script at `path` is not one to ask php-fpm for, or null when
 * it is: missing, a link, or a file or folder that another user than root owns or may write
 * (php-fpm runs what is there; whoever may change it chooses what the answer says).
 */
export async function opcacheScriptProblem(fs: Fs, path: string): Promise<string | null> {
  const folder = path.slice(0, path.lastIndexOf("/")) || "/";
  const install = "install it with sh scripts/samples.sh install";
  try {
    const dir = await fs.info(folder);
    if (dir === null) return `${path} is missing: ${install}`;
    if (dir.isSymlink || !dir.isDirectory) return `${folder} is not a folder: ${install}`;
    if (dir.uid !== 0 || (dir.mode & 0o022) !== 0) {
      return `${folder} is not root's alone (expected owner root, mode 0755)`;
    }
    const file = await fs.info(path);
    if (file === null) return `${path} is missing: ${install}`;
    if (file.isSymlink || !file.isFile) return `${path} is not a regular file: ${install}`;
    if (file.uid !== 0 || (file.mode & 0o022) !== 0) {
      return `${path} is not root's alone (expected owner root, mode 0644)`;
    }
    return null;
  } catch (err) {
    return `${path} cannot be checked: ${err instanceof Error ? err.message : String(err)}`;
  }
}
