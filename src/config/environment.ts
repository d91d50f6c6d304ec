/**
 * What the host offers: its init system and tools, the php-fpm (and php-cgi) service a target
 * restarts, and where a run keeps its log, state and locks by default.
 */
import {
  findCgiServices,
  findFpmServices,
  processNameFor,
  SEARCH_DIRS,
  SERVICE_DIRS,
  serviceExists,
  type ServiceTarget,
} from "../act/service.ts";
import type { Deps } from "../shared/deps.ts";

/** Chooses the service: the override (which must exist), or the only one installed. */
export async function chooseService(
  deps: Deps,
  kind: "php-fpm" | "php-cgi",
  override: string | undefined,
  processOverride: string | undefined,
  flag: string,
): Promise<ServiceTarget | string> {
  let service = override;
  if (service === undefined) {
    const found = kind === "php-fpm"
      ? await findFpmServices(deps.fs)
      : await findCgiServices(deps.fs);
    if (found.length === 0) {
      return `Cannot find a ${kind} service in ${
        SERVICE_DIRS.join(", ")
      }: install ${kind} or name it with ${flag}`;
    }
    if (found.length > 1) {
      return `Found several ${kind} services (${
        found.join(", ")
      }): choose the one this heartbeat goes to with ${flag}`;
    }
    service = found[0] ?? "";
  } else if (!(await serviceExists(deps.fs, service))) {
    return `Cannot find service "${service}" in ${
      SERVICE_DIRS.join(", ")
    }: check the name (${flag})`;
  }
  const processName = processOverride ?? processNameFor(service);
  if (processOverride === undefined) {
    const binaries = SEARCH_DIRS.map((dir) => `${dir}/${processName}`);
    const present = await Promise.all(binaries.map((p) => deps.fs.isExecutable(p)));
    if (!present.some(Boolean)) {
      return `Cannot find the ${kind} program "${processName}" of service "${service}" in ${
        SEARCH_DIRS.join(", ")
      }: name its process with ${flag.replace("service", "process-name")}`;
    }
  }
  return { service, processName };
}

export function userStateHome(deps: Deps): string | null {
  const state = deps.host.env("XDG_STATE_HOME");
  if (state?.startsWith("/")) return state;
  const home = deps.host.env("HOME");
  return home?.startsWith("/") ? `${home}/.local/state` : null;
}

/**
 * Where locks are. Root's are in a folder only root can write (made 0700 when missing): in the
 * world-writable /run/lock another user could create a lock file first and hold it for good.
 */
export async function defaultLockDir(deps: Deps, isRoot: boolean): Promise<string | null> {
  if (isRoot) return deps.host.os() === "freebsd" ? "/var/run/php-relaunch" : "/run/php-relaunch";
  const runtime = deps.host.env("XDG_RUNTIME_DIR");
  if (runtime?.startsWith("/")) return runtime;
  const uid = deps.host.uid();
  const userRun = `/run/user/${uid}`;
  return uid !== null && await deps.fs.exists(userRun) ? userRun : null;
}
