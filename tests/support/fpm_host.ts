/**
 * A host's php-fpm processes as ps, kill and the init system see them, for unit tests of what
 * root decides from the process table: services start masters (root's, the init system's
 * children, titled with their php-fpm.conf) and their workers; `kill` ends processes by pid;
 * anyone may add processes of their own (another user's fake master, another instance).
 */
import type { RunResult } from "../../src/shared/deps.ts";
import { TITLE_WIDTH } from "../../src/act/processes.ts";
import { FakeClock, FakeRunner, type RunCall } from "./fakes.ts";

/** One process of the fake table. */
export interface FakeProc {
  pid: number;
  ppid: number;
  pgid: number;
  ruid: number;
  euid: number;
  /** ps's STAT: S, Ss, T, Z, D... */
  stat: string;
  name: string;
  title: string;
  rssKb: number;
  /** When it started (ms since the epoch): ps shows its age from the host's clock. */
  startedAt: number;
}

/** How one service's processes look: their name, the master's config, the workers' pool. */
export interface ServiceSpec {
  processName: string;
  /** The master's php-fpm.conf; null for php-cgi, which has no master. */
  config: string | null;
  pool: string;
  workers: number;
  /** The pool's uid (www-data). */
  uid: number;
}

/** Debian's php8.2-fpm (and a 7.4 beside it, and php-cgi), as the tests use them. */
export const SERVICES: Record<string, ServiceSpec> = {
  "php8.2-fpm": {
    processName: "php-fpm8.2",
    config: "/etc/php/8.2/fpm/php-fpm.conf",
    pool: "www",
    workers: 2,
    uid: 33,
  },
  "php7.4-fpm": {
    processName: "php-fpm7.4",
    config: "/etc/php/7.4/fpm/php-fpm.conf",
    pool: "www",
    workers: 2,
    uid: 33,
  },
  "php8.2-cgi": { processName: "php-cgi8.2", config: null, pool: "", workers: 2, uid: 33 },
};

/** The title php-fpm's master gives itself. */
export const masterTitle = (config: string) => `php-fpm: master process (${config})`;

/** The start of the tests' processes: 100 s before a {@link FakeClock}'s first time. */
export const STARTED_AT = new FakeClock().now() - 100_000;

/** A process's facts as `ps -C NAME -o <factsArgs' fields>` prints them at time `now`. */
export function psLine(p: FakeProc, now = STARTED_AT + 100_000): string {
  return [
    String(p.pid).padStart(5),
    String(p.ppid).padStart(5),
    String(p.pgid).padStart(5),
    String(p.ruid).padStart(5),
    String(p.euid).padStart(5),
    p.stat.padEnd(4),
    "00:00:01",
    String(p.rssKb).padStart(5),
    String(Math.round((now - p.startedAt) / 1000)).padStart(7),
  ].join(" ");
}

/** A process's title as `ps -q PIDS -o <titlesArgs' fields>` prints it. */
export function titleLine(p: FakeProc): string {
  return [
    String(p.pid).padStart(5),
    p.title.slice(0, TITLE_WIDTH).padEnd(TITLE_WIDTH),
    String(p.pid).padStart(5),
  ].join(" ");
}

/** The fake host. */
export class FpmHost {
  procs: FakeProc[] = [];
  /** Starts made through the init system. */
  starts = 0;
  /** Starts from this one on bring the service up (Infinity: none does). */
  startsToComeUp = 1;
  /** Pids SIGKILL cannot end (a process in state D). */
  readonly unkillable = new Set<number>();
  /** A killed master stays a zombie (its parent has not reaped it). */
  zombies = false;
  /** Every signal sent with kill, as "SIGNAL pid". */
  readonly signals: string[] = [];
  /** The pids whose titles each `ps -q` read. */
  readonly titleReads: number[][] = [];
  private nextPid = 1000;

  constructor(
    readonly services: Record<string, ServiceSpec> = SERVICES,
    readonly clock: { now(): number } = new FakeClock(),
  ) {}

  /** Adds a process; unset fields are a root daemon's. */
  add(p: Partial<FakeProc> & { name: string; title: string }): FakeProc {
    const pid = p.pid ?? this.nextPid++;
    const proc: FakeProc = {
      pid,
      ppid: 1,
      pgid: pid,
      ruid: 0,
      euid: 0,
      stat: "Ss",
      rssKb: 10_000,
      startedAt: STARTED_AT,
      ...p,
    };
    this.procs.push(proc);
    return proc;
  }

  /** Adds a worker of `master`'s pool `pool`: its child, in its group, the pool's user's. */
  addWorker(master: number, pool: string, over: Partial<FakeProc> = {}): FakeProc {
    return this.add({
      name: "php-fpm8.2",
      title: `php-fpm: pool ${pool}`,
      ppid: master,
      pgid: master,
      ruid: 33,
      euid: 33,
      stat: "S",
      ...over,
    });
  }

  /** Starts `service`'s master and workers as its init system would; the master's pid. */
  up(service: string, stat = "S"): number {
    const spec = this.services[service]!;
    if (spec.config === null) {
      for (let i = 0; i < spec.workers; i++) {
        this.add({
          name: spec.processName,
          title: spec.processName,
          ruid: spec.uid,
          euid: spec.uid,
        });
      }
      return 0;
    }
    const master = this.add({
      name: spec.processName,
      title: masterTitle(spec.config),
      stat: `${stat}s`,
    });
    for (let i = 0; i < spec.workers; i++) {
      this.addWorker(master.pid, spec.pool, {
        name: spec.processName,
        ruid: spec.uid,
        euid: spec.uid,
        stat,
      });
    }
    return master.pid;
  }

  /** The live master of `service`, by its title. */
  master(service: string): FakeProc | undefined {
    const spec = this.services[service]!;
    return this.procs.find((p) =>
      spec.config !== null && p.title === masterTitle(spec.config) && p.stat[0] !== "Z" &&
      p.ruid === 0 && p.euid === 0
    );
  }

  /** The pids of the live processes named `name`. */
  alive(name: string): number[] {
    return this.procs.filter((p) => p.name === name && p.stat[0] !== "Z").map((p) => p.pid);
  }

  /** Ends process `pid` as SIGKILL does. */
  private killOne(pid: number): boolean {
    const p = this.procs.find((q) => q.pid === pid && q.stat[0] !== "Z");
    if (p === undefined) return false;
    if (this.unkillable.has(pid)) return true;
    const isMaster = p.title.startsWith("php-fpm: master process");
    if (isMaster && this.zombies) p.stat = "Z";
    else this.procs = this.procs.filter((q) => q !== p);
    // orphans go to init
    for (const q of this.procs) if (q.ppid === pid) q.ppid = 1;
    return true;
  }

  private stop(service: string): void {
    const m = this.master(service);
    if (m === undefined) return;
    for (const p of this.procs.filter((q) => q.pgid === m.pid)) this.killOne(p.pid);
  }

  private start(service: string): void {
    this.starts++;
    const spec = this.services[service];
    if (spec === undefined || this.starts < this.startsToComeUp) return;
    const running = spec.config === null
      ? this.alive(spec.processName).length > 0
      : this.master(service) !== undefined;
    if (!running) this.up(service);
  }

  /** What the commands this fake knows answer; undefined for others. */
  answer(call: RunCall): Partial<RunResult> | undefined {
    const bin = call.cmd.split("/").pop();
    if (bin === "ps" && call.args[0] === "-C") {
      const now = this.clock.now();
      const rows = this.procs.filter((p) => p.name === call.args[1]).map((p) => psLine(p, now));
      return { code: rows.length > 0 ? 0 : 1, stdout: rows.join("\n") };
    }
    if (bin === "ps" && call.args[0] === "-q") {
      const pids = new Set(call.args[1]!.split(",").map(Number));
      this.titleReads.push([...pids]);
      const rows = this.procs.filter((p) => pids.has(p.pid)).map(titleLine);
      return { code: rows.length > 0 ? 0 : 1, stdout: rows.join("\n") };
    }
    if (bin === "kill") {
      const [flag, ...pids] = call.args;
      this.signals.push(...pids.map((pid) => `${flag!.slice(1)} ${pid}`));
      // php-fpm's graceful stop: the master ends its pool, then itself
      if (flag === "-QUIT") {
        for (const pid of pids) {
          for (const p of this.procs.filter((q) => q.pgid === Number(pid))) this.killOne(p.pid);
        }
        return { code: 0 };
      }
      if (flag !== "-KILL") return { code: 0 };
      const found = pids.map((pid) => this.killOne(Number(pid)));
      return { code: found.every(Boolean) ? 0 : 1 };
    }
    if (bin === "systemctl" && call.args[0] === "show") {
      return { code: 0, stdout: String(this.master(call.args.at(-1)!)?.pid ?? 0) };
    }
    // php-fpm's own daemon start, as an init script runs it
    const byConfig = Object.entries(this.services).find(([, spec]) =>
      spec.processName === bin && call.args.includes(spec.config ?? "")
    );
    if (byConfig !== undefined && call.args.includes("--daemonize")) {
      if (this.master(byConfig[0]) === undefined) this.up(byConfig[0]);
      return { code: 0 };
    }
    if (bin === "service" || bin === "systemctl") {
      const [a, b] = call.args;
      const [verb, service] = bin === "service" ? [b, a] : [a, b];
      if (verb === "start") this.start(service!);
      if (verb === "restart") {
        this.stop(service!);
        this.start(service!);
      }
      if (verb === "stop") this.stop(service!);
      return { code: 0 };
    }
    return undefined;
  }

  /**
   * A runner for this host. `first` may answer a command before it (undefined: it does not);
   * a command neither knows exits 0.
   */
  runner(first?: (call: RunCall) => Partial<RunResult> | Error | undefined): FakeRunner {
    return new FakeRunner((call) => first?.(call) ?? this.answer(call) ?? { code: 0 });
  }
}
