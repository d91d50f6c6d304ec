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
  /** Its title (argv as it rewrote it), cut at {@link TITLE_WIDTH} characters; "" unread. */
  title: string;
}

/**
 * The title's width in ps's output: fixed, so that a process with megabytes of arguments takes
 * one short line like the others.
 */
export const TITLE_WIDTH = 255;
/** The most of ps's output kept: some tens of thousands of processes of one name. */
const MAX_PS_OUTPUT = 8 * 1024 * 1024;

/** ps's cumulative CPU time ([[dd-]hh:]mm:ss) in seconds. */
export function parseCpuTime(text: string): number {
  const [days, rest] = text.includes("-") ? text.split("-") : ["0", text];
  const parts = (rest ?? "").split(":").map(Number);
  let seconds = 0;
  for (const p of parts) seconds = seconds * 60 + (Number.isFinite(p) ? p : 0);
  return Number(days) * 86_400 + seconds;
}

/** The kernel's facts of each process named `name`: ps reads them from stat and status only. */
export function factsArgs(name: string): string[] {
  return ["-C", name, "-o", "pid=,ppid=,pgid=,ruid=,euid=,stat=,time=,rss=,etimes="];
}

/**
 * The titles of `pids`, read for them alone (`-q`: ps otherwise reads every process's command
 * line, and a process can make the read of its own wait for seconds). Each title sits between
 * two pids: padded or cut to its width, it ends where the second pid begins, whatever it holds.
 */
export function titlesArgs(pids: readonly number[]): string[] {
  return ["-q", pids.join(","), "-o", `pid=,args:${TITLE_WIDTH}=,pid=`];
}

/** ps's lines of facts as processes, titles unread (""); a line that is not one is left out. */
export function parseFacts(stdout: string): Proc[] {
  const out: Proc[] = [];
  for (const line of stdout.split("\n")) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s*$/
      .exec(line);
    if (m === null) continue;
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
      title: "",
    });
  }
  return out;
}

/** ps's lines of titles, by pid. */
export function parseTitles(stdout: string): Map<number, string> {
  const titles = new Map<number, string>();
  for (const line of stdout.split("\n")) {
    const m = /^\s*(\d+) (.*?)\s*(\d+)$/.exec(line);
    if (m !== null && m[1] === m[3]) titles.set(Number(m[1]), m[2]!);
  }
  return titles;
}

/** Which processes' titles are read: none, root's group leaders (masters), or every one. */
export type TitlesOf = "none" | "masters" | "all";

/** A root process leading its group: only such a one can be a master. */
export function rootLeader(p: Proc): boolean {
  return p.ruid === 0 && p.euid === 0 && p.pid === p.pgid;
}

/**
 * Every process named `name` (the kernel's 15-character name, as `ps -C` matches it), or null
 * when ps cannot say (failed, timed out, or said more than is kept): nothing is decided on half
 * a table. Titles are read for root's group leaders (no other user's process can make that read
 * wait), and with `"all"` for the others too, in a read of their own whose failure leaves their
 * titles unread ("").
 */
export async function readProcesses(
  runner: ProcessRunner,
  ps: string,
  name: string,
  timeoutMs: number,
  titlesOf: TitlesOf = "masters",
): Promise<Proc[] | null> {
  const facts = await runPs(runner, ps, factsArgs(name), timeoutMs);
  if (facts === null) return null;
  const rows = parseFacts(facts);
  const groups = titlesOf === "none"
    ? []
    : titlesOf === "all"
    ? [rows.filter(rootLeader), rows.filter((p) => !rootLeader(p))]
    : [rows.filter(rootLeader)];
  for (const group of groups) {
    if (group.length === 0) continue;
    const titles = parseTitles(
      await runPs(runner, ps, titlesArgs(group.map((p) => p.pid)), timeoutMs) ?? "",
    );
    for (const p of group) p.title = titles.get(p.pid) ?? "";
  }
  return rows;
}

/** One ps: its output, or null when it failed, timed out or said more than is kept. */
async function runPs(
  runner: ProcessRunner,
  ps: string,
  args: string[],
  timeoutMs: number,
): Promise<string | null> {
  let r;
  try {
    r = await runner.run(ps, args, { timeoutMs, maxBytes: MAX_PS_OUTPUT });
  } catch {
    return null;
  }
  // ps exits 1 when no process has the name (or the pids are gone): nothing, not unreadable
  if (r.timedOut || r.truncated || (r.code !== 0 && !(r.code === 1 && r.stdout === ""))) {
    return null;
  }
  return r.stdout;
}
