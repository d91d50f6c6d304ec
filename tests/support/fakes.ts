/** Test doubles for the ports of src/deps.ts: deterministic, recording, no globals touched. */
import { configureSync, type LogRecord } from "@logtape/logtape";
import type {
  Clock,
  Deps,
  FcgiAnswer,
  FcgiGet,
  FcgiTarget,
  Fs,
  Host,
  HttpAnswer,
  HttpGet,
  LogLines,
  Mail,
  Mailer,
  MailRoute,
  ProcessRunner,
  RunOptions,
  RunResult,
} from "../../src/shared/deps.ts";
import { MAX_TEXT_FILE } from "../../src/shared/deps.ts";
import type { HeldLock, TryLock } from "../../src/shared/lock.ts";
import type { Tools } from "../../src/act/service.ts";
import { renderMessage } from "../../src/shared/log.ts";

/** One scripted FastCGI outcome: an answer, or what the client would throw, after `ms`. */
export type FcgiStep =
  | { status: number; body?: string; ms?: number }
  | { error: unknown; ms?: number };

/**
 * A FcgiGet that plays `script` in order (the last step repeats), or answers by path when given
 * a function, advancing `clock` by each step's duration.
 */
export function scriptedFcgi(
  clock: FakeClock,
  script: FcgiStep[] | ((target: FcgiTarget, call: number) => FcgiStep),
): FcgiGet & { calls: FcgiTarget[] } {
  const calls: FcgiTarget[] = [];
  const get = (target: FcgiTarget, _signal: AbortSignal): Promise<FcgiAnswer> => {
    const step = typeof script === "function"
      ? script(target, calls.length)
      : script[Math.min(calls.length, script.length - 1)];
    calls.push(target);
    if (step === undefined) throw new Error("scriptedFcgi: empty script");
    clock.advance(step.ms ?? 2);
    if ("error" in step) return Promise.reject(step.error);
    return Promise.resolve({ status: step.status, body: step.body ?? "", stderr: "" });
  };
  return Object.assign(get, { calls });
}

/** The mail route of an SMTP server at `host`:`port` with the defaults (TLS auto, no AUTH). */
export function smtpRoute(
  host: string,
  port: number,
  over: Partial<Extract<MailRoute, { transport: "smtp" }>> = {},
): Extract<MailRoute, { transport: "smtp" }> {
  return {
    transport: "smtp",
    host,
    port,
    tls: "auto",
    user: null,
    password: null,
    caFile: null,
    ...over,
  };
}

/** A clock that only moves when told to or when something sleeps on it. */
export class FakeClock implements Clock {
  readonly sleeps: number[] = [];
  constructor(public time = 1_700_000_000_000) {}
  now = (): number => this.time;
  sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    if (signal?.aborted) return Promise.resolve();
    this.sleeps.push(ms);
    this.time += Math.max(0, ms);
    // let other loops (and signal handlers) run, as a real sleep would
    return new Promise((resolve) => setTimeout(resolve, 0));
  };
  advance(ms: number): void {
    this.time += ms;
  }
}

/** One scripted HTTP outcome: an answer, or what fetch would throw, after `ms`. */
export type HttpStep =
  | { status: number; body?: string; location?: string; ms?: number }
  | { error: unknown; ms?: number };

/** Errors shaped like Deno 2.9's fetch failures (platform-facts.md §b). */
export const fetchErrors = {
  timeout: () => new DOMException("The operation was aborted due to timeout", "TimeoutError"),
  refused: () =>
    new TypeError("fetch failed", {
      cause: new Error(
        "error sending request for url (http://127.0.0.1:8889/): client error (Connect): tcp connect error: Connection refused (os error 111)",
      ),
    }),
  dns: () =>
    new TypeError("fetch failed", {
      cause: new Error(
        "error sending request for url (http://nope.invalid/): client error (Connect): dns error: failed to lookup address information: Name or service not known",
      ),
    }),
  closed: () =>
    new TypeError("fetch failed", {
      cause: new Error(
        "error sending request for url (http://127.0.0.1:8889/): client error (SendRequest): connection closed before message completed",
      ),
    }),
  tls: () =>
    new TypeError("fetch failed", {
      cause: new Error(
        "error sending request for url (https://127.0.0.1:8889/): client error (Connect): received corrupt message of type InvalidContentType",
      ),
    }),
};

/**
 * An HttpGet that plays `script` in order (the last step repeats) and advances `clock` by each
 * step's duration, as a real request would take time.
 */
export function scriptedHttp(clock: FakeClock, script: HttpStep[]): HttpGet & { calls: URL[] } {
  const calls: URL[] = [];
  const get = (url: URL, _signal: AbortSignal): Promise<HttpAnswer> => {
    const step = script[Math.min(calls.length, script.length - 1)];
    calls.push(url);
    if (step === undefined) throw new Error("scriptedHttp: empty script");
    clock.advance(step.ms ?? 5);
    if ("error" in step) return Promise.reject(step.error);
    return Promise.resolve({
      status: step.status,
      location: step.location ?? null,
      body: step.body ?? "",
    });
  };
  return Object.assign(get, { calls });
}

/** A recorded external command. */
export interface RunCall {
  cmd: string;
  args: string[];
  timeoutMs: number;
  /** Set when the caller keeps only the output's end. */
  tailBytes?: number;
}

/** A process runner that answers from `respond` and records every argv. */
export class FakeRunner implements ProcessRunner {
  readonly calls: RunCall[] = [];
  constructor(
    private readonly respond: (call: RunCall, index: number) => Partial<RunResult> | Error,
  ) {}
  run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
    const call = {
      cmd,
      args: [...args],
      timeoutMs: opts.timeoutMs,
      ...(opts.tailBytes === undefined ? {} : { tailBytes: opts.tailBytes }),
    };
    this.calls.push(call);
    const r = this.respond(call, this.calls.length - 1);
    if (r instanceof Error) return Promise.reject(r);
    return Promise.resolve({
      code: 0,
      signal: null,
      stdout: "",
      stderr: "",
      timedOut: false,
      ...r,
    });
  }
  /** The recorded commands as "cmd arg arg" strings. */
  lines(): string[] {
    return this.calls.map((c) => [c.cmd, ...c.args].join(" "));
  }
}

/** Whether a recorded command only looks (ps, systemd's MainPID) rather than acts. */
export function looks(line: string): boolean {
  return /^\S*\/ps |^\S*\/systemctl show /.test(line);
}

/** The commands a runner ran that act on the host (kill, service...), not those that look. */
export function actions(runner: FakeRunner): string[] {
  return runner.lines().filter((l) => !looks(l));
}

/** A mailer that records mails, or fails with `failWith`. */
export function fakeMailer(failWith?: Error): Mailer & { sent: Mail[] } {
  const sent: Mail[] = [];
  const mailer: Mailer = (mail) => {
    sent.push(mail);
    return failWith ? Promise.reject(failWith) : Promise.resolve();
  };
  return Object.assign(mailer, { sent });
}

/** A filesystem of the given executables, directories and directory listings. */
export function fakeFs(spec: {
  executables?: string[];
  dirs?: Record<string, string[]>;
  exists?: string[];
  files?: Record<string, string>;
  /** Permission bits of `files` (default 0600). */
  modes?: Record<string, number>;
  /** `files` that are symbolic links (refused where links are). */
  links?: string[];
  /** The uid that owns each of `files` (default root). */
  owners?: Record<string, number>;
  /** Where the names removed are recorded (a pid file before a start). */
  removed?: string[];
  /** Sockets (neither file nor folder) at these paths, by their inode numbers. */
  sockets?: Record<string, number>;
  /** The device numbers of `sockets` (none told by default). */
  devices?: Record<string, number>;
  /** The inode numbers of `files` (default 1), for logs read from an offset. */
  inodes?: Record<string, number>;
}): Fs {
  const executables = new Set(spec.executables ?? []);
  const dirs = spec.dirs ?? {};
  const removed = spec.removed ?? [];
  const exists = new Set([...(spec.exists ?? []), ...Object.keys(dirs), ...executables]);
  return {
    exists: (path) => Promise.resolve(exists.has(path)),
    isExecutable: (path) => Promise.resolve(executables.has(path)),
    info: (path) => {
      const mode = spec.modes?.[path];
      const text = spec.files?.[path];
      const file = text !== undefined || executables.has(path);
      const socket = spec.sockets?.[path];
      if (socket !== undefined) {
        const info = { isFile: false, isDirectory: false, isSymlink: false, mode: 0o660 };
        const dev = spec.devices?.[path] ?? null;
        return Promise.resolve({ ...info, uid: 33, size: 0, ino: socket, dev, isSocket: true });
      }
      if (!file && !exists.has(path)) return Promise.resolve(null);
      return Promise.resolve({
        isFile: file,
        isDirectory: !file,
        isSymlink: false,
        mode: mode ?? (executables.has(path) || !file ? 0o755 : 0o600),
        uid: spec.owners?.[path] ?? 0,
        size: text?.length ?? 0,
        isSocket: false,
      });
    },
    listDir: (path) => Promise.resolve([...(dirs[path] ?? [])]),
    readTextFile: (path, maxBytes = MAX_TEXT_FILE) => {
      const text = spec.files?.[path];
      if (text === undefined) {
        return Promise.reject(
          new Deno.errors.NotFound(`No such file or directory (os error 2): readfile '${path}'`),
        );
      }
      return text.length > maxBytes
        ? Promise.reject(
          new Error(`it has ${text.length} bytes, more than the ${maxBytes} allowed`),
        )
        : Promise.resolve(text);
    },
    removeName: (path) => {
      removed.push(path);
      return Promise.resolve();
    },
    readUntrusted: (path, read) => {
      const text = spec.files?.[path];
      if (text === undefined) {
        return Promise.reject(new Deno.errors.NotFound(`No such file: "${path}"`));
      }
      if (spec.links?.includes(path)) return Promise.reject(new Error("it is a symbolic link"));
      const owner = spec.owners?.[path] ?? 0;
      if (read.owners !== undefined && !read.owners.includes(owner)) {
        return Promise.reject(new Error(`it is owned by uid ${owner}`));
      }
      if (!read.tail) {
        return text.length > read.maxBytes
          ? Promise.reject(new Error(`it has ${text.length} bytes`))
          : Promise.resolve(text);
      }
      const tail = text.slice(-read.maxBytes);
      return Promise.resolve(tail.length < text.length ? tail.slice(tail.indexOf("\n") + 1) : tail);
    },
    readUntrustedFrom: (path, read) => {
      const text = spec.files?.[path];
      if (text === undefined) {
        return Promise.reject(new Deno.errors.NotFound(`No such file: "${path}"`));
      }
      const owner = spec.owners?.[path] ?? 0;
      if (read.owners !== undefined && !read.owners.includes(owner)) {
        return Promise.reject(new Error(`it is owned by uid ${owner}`));
      }
      return Promise.resolve(linesFrom(text, spec.inodes?.[path] ?? 1, read));
    },
  };
}

/** A Debian 12 host without systemd, with php8.2-fpm installed: what CI has. */
export function debianFs(
  extra: {
    dirs?: Record<string, string[]>;
    executables?: string[];
    files?: Record<string, string>;
    modes?: Record<string, number>;
    sockets?: Record<string, number>;
  } = {},
) {
  return fakeFs({
    executables: [
      "/usr/sbin/service",
      "/usr/bin/systemctl",
      "/usr/bin/ps",
      "/usr/bin/kill",
      "/usr/sbin/php-fpm8.2",
      ...(extra.executables ?? []),
    ],
    dirs: { "/etc/init.d": ["nginx", "php8.2-fpm", "procps"], ...(extra.dirs ?? {}) },
    exists: ["/run/lock", "/var/lock"],
    files: extra.files ?? {},
    modes: extra.modes ?? {},
    sockets: extra.sockets ?? {},
  });
}

/** A host with the given uid and environment. */
export function fakeHost(uid = 0, env: Record<string, string> = {}, os = "linux"): Host {
  return {
    os: () => os,
    hostname: () => "web1",
    uid: () => uid,
    env: (name) => env[name],
    stderrIsTerminal: () => false,
    memory: () => ({ total: 4 * 2 ** 30, available: 2 * 2 ** 30 }),
    allows: () => true,
  };
}

/** Fake deps plus what they recorded. */
export interface TestDeps extends Deps {
  clock: FakeClock;
  out: string[];
  err: string[];
}

/** Deps whose every side effect is a fake; override any of them. */
export function testDeps(over: Partial<Deps> & { clock?: FakeClock } = {}): TestDeps {
  const clock = over.clock ?? new FakeClock();
  const out: string[] = [];
  const err: string[] = [];
  return {
    runner: new FakeRunner(() => new Error("unexpected command")),
    httpGet: scriptedHttp(clock, [{ error: new Error("unexpected probe") }]),
    fcgiGet: scriptedFcgi(clock, [{ error: new Error("unexpected FastCGI request") }]),
    // no socket answers a connection unless a test says so
    unixListens: () => Promise.resolve(false),
    // no master exits between probes unless a test says so
    watchExit: () => ({ exited: new Promise<void>(() => {}), stop() {} }),
    mailer: fakeMailer(),
    webhookPost: () => Promise.reject(new Error("unexpected webhook")),
    deadmanPing: () => Promise.reject(new Error("unexpected dead-man's switch ping")),
    fs: debianFs(),
    host: fakeHost(),
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    ...over,
    clock,
    out,
    err,
  };
}

/** Sends LogTape records to an array for the duration of a test; returns the rendered lines. */
export function captureLogs(): { lines: () => string[]; records: LogRecord[] } {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { memory: (r) => records.push(r) },
    loggers: [
      { category: ["php-relaunch"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["memory"] },
    ],
  });
  return {
    records,
    lines: () => records.filter((r) => r.level !== "debug").map(renderMessage),
  };
}

/**
 * Locks in memory, so that unit tests never take a lock file of the host's: `held` are the
 * paths another run holds; a lock taken here is held until disposed.
 */
export function memoryLocks(
  ...held: string[]
): TryLock & { held: Set<string>; taken: string[]; holders: Map<string, string> } {
  const locks = new Set(held);
  const taken: string[] = [];
  const holders = new Map<string, string>();
  const take = (path: string): Promise<HeldLock | null> => {
    if (locks.has(path)) return Promise.resolve(null);
    locks.add(path);
    taken.push(path);
    return Promise.resolve({
      path,
      say: (holder: string) => Promise.resolve(void holders.set(path, holder)),
      [Symbol.dispose]: () => void locks.delete(path),
    });
  };
  return Object.assign(take, {
    held: locks,
    taken,
    holders,
    holder: (path: string) => Promise.resolve(holders.get(path) ?? null),
  });
}

/**
 * A mailer whose server takes the connection and never answers: every send waits until
 * `release()`, as nodemailer would until its timeouts.
 */
export function hangingMailer(): Mailer & { sent: Mail[]; release(): void } {
  const sent: Mail[] = [];
  const waiting: (() => void)[] = [];
  let released = false;
  const mailer: Mailer = (mail) => {
    sent.push(mail);
    return released ? Promise.resolve() : new Promise((resolve) => waiting.push(resolve));
  };
  return Object.assign(mailer, {
    sent,
    release: () => {
      released = true;
      for (const resolve of waiting.splice(0)) resolve();
    },
  });
}

/** Lets other tasks run until `done()` holds, at most `rounds` times; whether it came to hold. */
export async function until(done: () => boolean, rounds = 5000): Promise<boolean> {
  for (let i = 0; i < rounds && !done(); i++) await new Promise((r) => setTimeout(r, 0));
  return done();
}

/** The tools of a Debian 12 host without systemd, where they are found. */
export const DEBIAN_TOOLS: Tools = {
  service: "/usr/sbin/service",
  systemctl: null,
  rcService: null,
  ps: "/usr/bin/ps",
  kill: "/usr/bin/kill",
  ss: null,
  journalctl: null,
  dmesg: null,
};

/** An alert subject's incident tag, " [target #20261127-193012-345]". */
export const INCIDENT_TAG = / \[[A-Za-z0-9._+-]+ #\d{8}-\d{6}-\d{3}\]$/;

/** The subjects of `mails`, each without its incident tag, which must be there. */
export function untagged(mails: readonly { subject: string }[]): string[] {
  return mails.map((m) => {
    if (!INCIDENT_TAG.test(m.subject)) throw new Error(`no incident tag: ${m.subject}`);
    return m.subject.replace(INCIDENT_TAG, "");
  });
}

/** The subjects of `mails`, without the incident tag of those that have one. */
export function untaggedOrPlain(mails: readonly { subject: string }[]): string[] {
  return mails.map((m) => m.subject.replace(INCIDENT_TAG, ""));
}

/**
 * What Fs.readUntrustedFrom reads of `text` (one character a byte), as the real one does: the
 * newest `maxBytes` from `from` on, whole lines only; from the start when `ino` is another file's
 * or the text is shorter than `from`.
 */
export function linesFrom(
  text: string,
  ino: number,
  read: { from: number; ino: number | null; maxBytes: number },
): LogLines {
  const restarted = (read.ino !== null && read.ino !== ino) || text.length < read.from;
  const from = restarted ? 0 : read.from;
  let first = Math.max(from, text.length - read.maxBytes);
  let rest = text.slice(first);
  if (first > from) {
    const newline = rest.indexOf("\n");
    const cut = newline < 0 ? rest.length : newline + 1;
    rest = rest.slice(cut);
    first += cut;
  }
  const last = rest.lastIndexOf("\n");
  const whole = last < 0 && rest.length >= read.maxBytes ? rest.length : last + 1;
  return {
    text: rest.slice(0, whole),
    end: first + whole,
    ino,
    restarted,
    skipped: first - from,
  };
}
