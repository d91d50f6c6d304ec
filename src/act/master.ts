/**
 * Which process is php-fpm's master, from facts only root can make true: started by root (real
 * and effective uid 0), leading its own process group, a child of the init system (or the unit's
 * MainPID, as systemd says it), named as the service's processes are, and titled with the
 * service's own php-fpm.conf. The pid file is not one of them: Debian's /run/php is www-data's,
 * who can replace it. Users' processes that take the same name or title change nothing.
 */
import type { Fs, ProcessRunner } from "../shared/deps.ts";
import { type Proc, readProcesses, TITLE_WIDTH, type TitlesOf } from "./processes.ts";
import type { InitSystem, Tools } from "./service.ts";

/** What identifies one service's master. */
export interface MasterIdentity {
  service: string;
  processName: string;
  /** php-fpm.conf as the master's title names it; null when unknown (any config's title). */
  fpmConfig: string | null;
}

/** The master found, and the table it was found in. */
export interface MasterView {
  /** The service's master, alive; null when none is, or when it cannot be told apart. */
  live: number | null;
  /** How many processes pass as this service's master (more than one: cannot tell). */
  candidates: number;
  /** Every process of the service's name; null when ps could not say. */
  rows: Proc[] | null;
  /** The unit's MainPID, where systemd runs the service. */
  mainPid: number | null;
}

const TITLE = "php-fpm: master process (";

/** Whether `title` is a master's of `fpmConfig` (any configuration when null). */
function masterTitle(title: string, fpmConfig: string | null): boolean {
  if (fpmConfig === null) return title.startsWith(TITLE) && title.endsWith(")");
  // ps cuts a long title at its width: a very long path is compared as far as it shows
  return title === `${TITLE}${fpmConfig})`.slice(0, TITLE_WIDTH);
}

/**
 * Whether `p` can be `id`'s master: root's (a setuid program keeps its caller's real uid), a
 * process group leader (php-fpm's daemon calls setsid; systemd starts each service in its own
 * session), alive, the init system's child or the unit's MainPID, with the master's title.
 */
export function isMaster(p: Proc, id: MasterIdentity, mainPid: number | null = null): boolean {
  return p.ruid === 0 && p.euid === 0 && p.pid === p.pgid && p.state !== "Z" &&
    (p.ppid === 1 || p.pid === mainPid) && masterTitle(p.title, id.fpmConfig);
}

/**
 * Whether `p` may be `id`'s master in the moment it has no master's title yet: root's, leading
 * its group, the init system's child, and not titled as php-fpm titles its processes (a master
 * just started, or re-executing itself on SIGUSR2, shows its command line for a moment). Only
 * root can start one, so counting it can only make a verdict less certain.
 */
export function mayBeMaster(p: Proc, id: MasterIdentity, mainPid: number | null = null): boolean {
  return isMaster(p, id, mainPid) ||
    (p.ruid === 0 && p.euid === 0 && p.pid === p.pgid && p.state !== "Z" &&
      (p.ppid === 1 || p.pid === mainPid) && !p.title.startsWith("php-fpm: "));
}

/**
 * The master among `rows`. With systemd, the unit's MainPID says it. Otherwise the one process
 * that passes, or, when several do (php-fpm.conf unknown and two instances of one binary), the
 * one last known, if it is among them: the pid file never chooses.
 */
export function masterAmong(
  rows: readonly Proc[],
  id: MasterIdentity,
  known: number | null,
  mainPid: number | null = null,
): { live: number | null; candidates: number } {
  const found = rows.filter((p) => isMaster(p, id, mainPid));
  if (mainPid !== null) {
    return {
      live: found.some((p) => p.pid === mainPid) ? mainPid : null,
      candidates: found.length,
    };
  }
  if (found.length === 1) return { live: found[0]!.pid, candidates: 1 };
  const again = found.find((p) => p.pid === known);
  return { live: again?.pid ?? null, candidates: found.length };
}

/**
 * How long one look at the process table (or systemd) may take: it only delays a decision, and
 * a look that runs out starts nothing, so it is given what a loaded machine needs.
 */
export const LOOK_TIMEOUT_MS = 5000;

/** The unit's MainPID as systemd says it, or null (not running, no systemd, no answer). */
export async function systemdMainPid(
  runner: ProcessRunner,
  systemctl: string,
  service: string,
): Promise<number | null> {
  try {
    const r = await runner.run(systemctl, ["show", "--property", "MainPID", "--value", service], {
      timeoutMs: LOOK_TIMEOUT_MS,
    });
    const pid = Number(r.stdout.trim());
    return r.code === 0 && Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

/** What finding the master needs: the tools and how services run here. */
export interface Lookout {
  runner: ProcessRunner;
  tools: Tools;
  init: InitSystem;
}

/**
 * Reads the process table (and, with systemd, the unit's MainPID) and finds `id`'s master.
 * `titlesOf`: whose titles are read besides the masters' (the workers', to tell their pools).
 */
export async function locateMaster(
  look: Lookout,
  id: MasterIdentity,
  known: number | null,
  titlesOf: TitlesOf = "masters",
): Promise<MasterView> {
  const [rows, mainPid] = await Promise.all([
    readProcesses(look.runner, look.tools.ps, id.processName, LOOK_TIMEOUT_MS, titlesOf),
    look.init === "systemd" && look.tools.systemctl !== null
      ? systemdMainPid(look.runner, look.tools.systemctl, id.service)
      : Promise.resolve(null),
  ]);
  if (rows === null) return { live: null, candidates: 0, rows, mainPid };
  return { ...masterAmong(rows, id, known, mainPid), rows, mainPid };
}

/**
 * The live processes of the pool whose master is (or was) `master`: its process group (workers
 * keep it after the master dies) and its children. A pid of `master` that now names a process
 * that is not `id`'s master has been reused: the old group cannot exist beside it (the kernel
 * keeps a group's number while it has members), so nothing is selected.
 */
export function poolOf(
  rows: readonly Proc[],
  id: MasterIdentity,
  master: number,
  mainPid: number | null = null,
): Proc[] {
  const holder = rows.find((p) => p.pid === master && p.state !== "Z");
  if (holder !== undefined && !isMaster(holder, id, mainPid)) return [];
  return rows.filter((p) =>
    p.state !== "Z" && (p.pid === master || p.pgid === master || p.ppid === master)
  );
}

/**
 * The pid a pid file names, or null (no file, not a number, refused): a hint, never a fact. It
 * only says when the master may have changed and must be looked for again (see
 * {@link locateMaster}); read as a file another user may have replaced.
 */
export async function readPidFile(
  fs: Pick<Fs, "readUntrusted">,
  path: string | null,
): Promise<number | null> {
  if (path === null) return null;
  try {
    const pid = Number((await fs.readUntrusted(path, { maxBytes: 32 })).trim());
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}
