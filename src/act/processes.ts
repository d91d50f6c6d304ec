/**
 * The processes of one program name, from one `ps`: what the kernel says of each (its real and
 * effective owner, parent, process group, state, memory and age) and the title the process gives
 * itself (`php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)`, `php-fpm: pool www`). The
 * kernel's facts cannot be forged by another user; a title can, so it only ever narrows a choice
 * the kernel's facts have made.
 */
import type { ProcessRunner } from "../shared/deps.ts";

/** One process as ps saw it. */
export interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  /** The real uid: a setuid program started by another user keeps that user's. */
  ruid: number;
  /** The effective uid. */
  euid: number;
  /** R running, S sleeping, D uninterruptible (I/O), T stopped, Z zombie. */
  state: string;
  cpuSeconds: number;
  rssKb: number;
  ageSeconds: number;
  /** Its title (argv as it rewrote it), cut at {@link TITLE_WIDTH} characters. */
  title: string;
}

/**
 * The title's width in ps's output: fixed, so that a process with megabytes of arguments takes
 * one short line like the others and cannot push the real master out of the output.
 */
export const TITLE_WIDTH = 255;
/** The most of ps's output kept: some thousands of processes of one name. */
const MAX_PS_OUTPUT = 8 * 1024 * 1024;

/** ps's cumulative CPU time ([[dd-]hh:]mm:ss) in seconds. */
export function parseCpuTime(text: string): number {
  const [days, rest] = text.includes("-") ? text.split("-") : ["0", text];
  const parts = (rest ?? "").split(":").map(Number);
  let seconds = 0;
  for (const p of parts) seconds = seconds * 60 + (Number.isFinite(p) ? p : 0);
  return Number(days) * 86_400 + seconds;
}

/** The ps arguments that list every process named `name` with the fields of {@link Proc}. */
export function psArgs(name: string): string[] {
  // the title between two fixed columns: padded or cut to its width, and the pid again after it
  // tells where it ends, whatever spaces it holds
  const fields = `pid=,ppid=,pgid=,ruid=,euid=,stat=,time=,rss=,etimes=,args:${TITLE_WIDTH}=,pid=`;
  return ["-C", name, "-o", fields];
}

/** ps's lines as processes; a line that is not one (a header, garbage) is left out. */
export function parseProcesses(stdout: string): Proc[] {
  const out: Proc[] = [];
  for (const line of stdout.split("\n")) {
    const m =
      /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+) (.*?)\s*(\d+)$/
        .exec(line);
    if (m === null || m[1] !== m[11]) continue;
    out.push({
      pid: Number(m[1]),
      ppid: Number(m[2]),
      pgid: Number(m[3]),
      ruid: Number(m[4]),
      euid: Number(m[5]),
      state: m[6]!.charAt(0),
      cpuSeconds: parseCpuTime(m[7]!),
      rssKb: Number(m[8]),
      ageSeconds: Number(m[9]),
      title: m[10]!,
    });
  }
  return out;
}

/**
 * Every process named `name` (the kernel's 15-character name, as `ps -C` matches it), or null
 * when ps cannot say (failed, timed out, or said more than is kept): nothing is decided on half
 * a table.
 */
export async function readProcesses(
  runner: ProcessRunner,
  ps: string,
  name: string,
  timeoutMs: number,
): Promise<Proc[] | null> {
  let r;
  try {
    r = await runner.run(ps, psArgs(name), { timeoutMs, maxBytes: MAX_PS_OUTPUT });
  } catch {
    return null;
  }
  // ps exits 1 when no process has the name: an empty table, not an unreadable one
  if (r.timedOut || r.truncated || (r.code !== 0 && !(r.code === 1 && r.stdout === ""))) {
    return null;
  }
  return parseProcesses(r.stdout);
}
