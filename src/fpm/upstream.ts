/**
 * What stuck workers wait on: each one's open connections (`ss -tnpH`, `ss -xpH`) and its kernel
 * wait (`ps -o pid=,wchan=,stat= -q PIDS`), read with the tools (Deno needs --allow-all for
 * /proc/<pid>). When most of them wait on one peer (a TCP address, a unix socket) or one kind of
 * file-system wait (D state), the pool is exhausted by an upstream: killing workers and restarting
 * php-fpm cannot help, they block again at once. Workers are www-data's: what they hold only
 * ever holds restarts back, never picks what root kills.
 */
import type { ProcessRunner } from "../shared/deps.ts";
import { clip, escapeControl } from "../shared/redact.ts";
import { holdersOf } from "./socket_holder.ts";

/** One look's limit: ss and ps answer at once; a slower one is not worth waiting for. */
const LOOK_TIMEOUT_MS = 2000;
/** The most of ss's output read: a host with some tens of thousands of sockets. */
const MAX_SS_OUTPUT = 8 * 1024 * 1024;
/** The most of a peer's name kept: a unix socket's path is at most 108 bytes. */
const MAX_PEER = 120;

/** What one process waits on, by the keys {@link peerOf} names. */
export type Waits = Map<number, string[]>;

/** The waits a majority of stuck workers share. */
export interface SharedWait {
  /** "127.0.0.1:3306", "/run/mysqld/mysqld.sock", "NFS (rpc_wait_bit_killable)". */
  peer: string;
  /** The workers waiting on it. */
  pids: number[];
}

/**
 * A TCP peer in `ss -tnpH`: `ESTAB 0 0 127.0.0.1:43210 127.0.0.1:3306 users:(("php-fpm8.2",
 * pid=12,fd=5))`. Every connection a process of `pids` holds, by pid: its peer's address:port.
 * A listening socket has no peer and is left out.
 */
export function parseTcpPeers(output: string, pids: ReadonlySet<number>): Waits {
  const out: Waits = new Map();
  for (const line of output.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[0] === "LISTEN" || f[0] === "State") continue;
    const peer = f[4]!;
    if (peer.endsWith(":*") || !/:\d+$/.test(peer)) continue;
    for (const h of holdersOf(line)) {
      if (pids.has(h.pid)) add(out, h.pid, peer);
    }
  }
  return out;
}

/**
 * The unix peers in `ss -xpH`: `u_str ESTAB 0 0 * 2615427 * 2615428 users:(...)`. A client's end
 * has no name ("*"); the server's end, found by the peer's inode, carries the path it listens on.
 * So a worker's outgoing connection is a stream socket without a name of its own whose peer has
 * one; its own incoming connections (from nginx, on the pool's socket) have a name and are left
 * out, as are datagram sockets (/dev/log).
 */
export function parseUnixPeers(output: string, pids: ReadonlySet<number>): Waits {
  const named = new Map<string, string>();
  const rows: { f: string[]; line: string }[] = [];
  for (const line of output.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^u_(str|seq)$/.test(f[0]!)) continue;
    rows.push({ f, line });
    if (f[4] !== "*") named.set(f[5]!, f[4]!);
  }
  const out: Waits = new Map();
  for (const { f, line } of rows) {
    if (f[4] !== "*" || f[1] === "LISTEN") continue;
    const path = named.get(f[7]!);
    if (path === undefined) continue;
    for (const h of holdersOf(line)) {
      if (pids.has(h.pid)) add(out, h.pid, path);
    }
  }
  return out;
}

/** A process's kernel wait: where it sleeps (wchan) and its state (R, S, D, T...). */
export interface KernelWait {
  wchan: string;
  state: string;
}

/** `ps -o pid=,wchan:64=,stat= -q PIDS`: `12 poll_schedule_timeout S`, by pid. */
export function parseKernelWaits(output: string): Map<number, KernelWait> {
  const out = new Map<number, KernelWait>();
  for (const line of output.split("\n")) {
    const m = /^\s*(\d+)\s+(\S+)\s+(\S+)\s*$/.exec(line);
    if (m !== null) out.set(Number(m[1]), { wchan: m[2]!, state: m[3]!.charAt(0) });
  }
  return out;
}

/** Sleeps a script asked for (sleep(), usleep()): user code, not a wait on anyone. */
const USER_SLEEP = /nanosleep|hrtimer/;
/** Where a process waits on a network file system's server. */
const NETWORK_FS = /nfs|rpc|cifs|smb|fuse|ceph|9p|afs/i;

/**
 * Whether a process in `wait` may be waiting on one of its connections: asleep in the kernel
 * (S), not in a sleep its script asked for. Running (R) is user code; stopped (T) or a zombie
 * waits on nothing.
 */
export function mayWaitOnPeer(wait: KernelWait | undefined): boolean {
  return wait !== undefined && wait.state === "S" && !USER_SLEEP.test(wait.wchan);
}

/** A wait in uninterruptible sleep (D) as a peer: the mount its wait site says, or null. */
export function mountOf(wait: KernelWait | undefined): string | null {
  if (wait === undefined || wait.state !== "D" || wait.wchan === "-") return null;
  return `${NETWORK_FS.test(wait.wchan) ? "NFS" : "file system"} (${wait.wchan})`;
}

/**
 * What each of `pids` waits on: its peers while it sleeps in the kernel, its mount while in D
 * state. Null when a tool cannot say (missing, failed, timed out): nothing is decided on half a
 * look.
 */
export async function lookAtWaits(
  runner: ProcessRunner,
  tools: { ss: string | null; ps: string },
  pids: readonly number[],
): Promise<Waits | null> {
  if (tools.ss === null || pids.length === 0) return null;
  const ss = tools.ss;
  const wanted = new Set(pids);
  const [tcp, unix, ps] = await Promise.all([
    run(runner, ss, ["-tnpH"]),
    run(runner, ss, ["-xpH"]),
    run(runner, tools.ps, ["-o", "pid=,wchan:64=,stat=", "-q", pids.join(",")]),
  ]);
  if (tcp === null || unix === null || ps === null) return null;
  const kernel = parseKernelWaits(ps);
  const peers = [parseTcpPeers(tcp, wanted), parseUnixPeers(unix, wanted)];
  const out: Waits = new Map();
  for (const pid of pids) {
    const wait = kernel.get(pid);
    const mount = mountOf(wait);
    if (mount !== null) add(out, pid, mount);
    if (!mayWaitOnPeer(wait)) continue;
    for (const p of peers) for (const peer of p.get(pid) ?? []) add(out, pid, peer);
  }
  return out;
}

/**
 * The peer most of `pids` wait on: held by more than half of them, and by at least `least`
 * (2: one worker on a slow query is not an upstream's failure). Null when none is.
 */
export function sharedWait(
  pids: readonly number[],
  waits: Waits,
  least = 2,
): SharedWait | null {
  const by = new Map<string, number[]>();
  for (const pid of pids) {
    // a worker counts once for a peer, however many connections it has to it
    for (const peer of new Set(waits.get(pid) ?? [])) by.set(peer, [...(by.get(peer) ?? []), pid]);
  }
  const [best] = [...by].sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : 1));
  if (best === undefined) return null;
  const [peer, holders] = best;
  return holders.length >= least && holders.length * 2 > pids.length
    ? { peer, pids: holders }
    : null;
}

/** How many of `pids` wait on each peer, the most waited on first, at most `limit`. */
export function waitCounts(
  pids: readonly number[],
  waits: Waits,
  limit = 5,
): { peer: string; waits: number }[] {
  const by = new Map<string, number>();
  for (const pid of pids) {
    for (const peer of new Set(waits.get(pid) ?? [])) by.set(peer, (by.get(peer) ?? 0) + 1);
  }
  return [...by].map(([peer, waits]) => ({ peer, waits }))
    .sort((a, b) => b.waits - a.waits || (a.peer < b.peer ? -1 : 1)).slice(0, limit);
}

function add(waits: Waits, pid: number, peer: string): void {
  // a peer's name may be any socket path another user bound: one bounded, printable line
  const name = clip(escapeControl(peer), MAX_PEER);
  waits.set(pid, [...(waits.get(pid) ?? []), name]);
}

async function run(runner: ProcessRunner, cmd: string, args: string[]): Promise<string | null> {
  try {
    const r = await runner.run(cmd, args, { timeoutMs: LOOK_TIMEOUT_MS, maxBytes: MAX_SS_OUTPUT });
    if (r.timedOut || r.truncated) return null;
    // ps exits 1 when every pid is gone: nothing to say of them
    return r.code === 0 || (r.code === 1 && r.stdout === "") ? r.stdout : null;
  } catch {
    return null;
  }
}
