/**
 * shared/ holds what every stage uses: the ports (this module), the error vocabulary, logging,
 * redaction, schema helpers, safe file primitives and locks. It imports no stage.
 *
 * The ports through which every side effect enters: the decision logic takes a {@link Deps} and
 * is unit-tested with fakes; `src/real.ts` assembles the real ones where the program starts.
 * Types only (and one limit): this module imports nothing.
 */

/** Wall-clock time and waiting. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` milliseconds, or at once when `signal` aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** What a finished external command left behind. A non-zero exit is a result, not an error. */
export interface RunResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** True when the command was killed because it outran its timeout. */
  timedOut: boolean;
  /** True when stdout was longer than the runner keeps (`maxBytes`): what it said is cut. */
  truncated?: boolean;
}

/** How a command is run: its deadline, and how much of a long output is kept. */
export interface RunOptions {
  timeoutMs: number;
  /** Keep this much of stdout's beginning (default 64 KiB); more sets `truncated`. */
  maxBytes?: number;
  /** Written to the command's standard input, which is then closed (default: none). */
  stdin?: Uint8Array;
  /** Ends the command (and its process group) early when it aborts, as the deadline does. */
  signal?: AbortSignal;
  /**
   * Keep the last this many bytes of stdout (from a line's start) instead of its first 64 KiB:
   * for logs, whose newest lines are at the end.
   */
  tailBytes?: number;
}

/** Runs an external program from an argument array (never through a shell). */
export interface ProcessRunner {
  /**
   * Runs `cmd` (an absolute path) with `args`, killing it and its process group after `timeoutMs`.
   * @throws {Deno.errors.NotFound} when `cmd` does not exist; other spawn errors unchanged.
   */
  run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult>;
}

/** An HTTP answer, its body read in full (bounded) under the same deadline as the request. */
export interface HttpAnswer {
  status: number;
  location: string | null;
  body: string;
}

/**
 * One GET without following redirects. Rejects the way `fetch` does: `TimeoutError` when `signal`
 * fires, `TypeError` with the detail in `cause` for connection failures.
 */
export type HttpGet = (url: URL, signal: AbortSignal) => Promise<HttpAnswer>;

/** A FastCGI responder's address: TCP or a unix socket. */
export type FcgiAddress =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "unix"; path: string };

/** One FastCGI GET: where to, the script path (SCRIPT_NAME) and the query string. */
export interface FcgiTarget {
  address: FcgiAddress;
  path: string;
  query: string;
}

/** A FastCGI responder's answer (the CGI status, the body, what it wrote to STDERR). */
export interface FcgiAnswer {
  status: number;
  body: string;
  stderr: string;
}

/**
 * One FastCGI request. Rejects with `TimeoutError` when `signal` fires, `Deno.errors.*` for
 * connection failures, `FcgiProtocolError` for a peer that breaks the protocol.
 */
export type FcgiGet = (target: FcgiTarget, signal: AbortSignal) => Promise<FcgiAnswer>;

/** How mail leaves this host: an SMTP server, or the local sendmail program. */
export type MailRoute =
  | {
    transport: "smtp";
    host: string;
    port: number;
    /** auto: STARTTLS when offered (not on loopback); starttls: required; tls: implicit (465). */
    tls: "auto" | "starttls" | "tls" | "none";
    user: string | null;
    /** From the environment or a root-only file; never from the command line, never logged. */
    password: string | null;
    /** A CA certificate file to trust for the server (a private CA, a self-signed server). */
    caFile: string | null;
  }
  | { transport: "sendmail"; path: string };

/** One alert email. */
export interface Mail {
  from: string;
  to: readonly string[];
  subject: string;
  text: string;
}

/**
 * Delivers one mail; rejects when the server (or sendmail) does not take it, or when `signal`
 * aborts (then the connection or the sendmail process is ended too).
 */
export type Mailer = (mail: Mail, route: MailRoute, signal?: AbortSignal) => Promise<void>;

/** One JSON POST; resolves to the HTTP status, rejects as `fetch` does. */
export type WebhookPost = (url: URL, json: string, signal: AbortSignal) => Promise<number>;

/**
 * One JSON POST to etcd's v3 gateway; resolves to the status and the body (at most a bounded
 * size), rejects as `fetch` does (`TimeoutError` when `signal` aborts).
 */
export type EtcdPost = (
  url: URL,
  json: string,
  signal: AbortSignal,
  /** Extra request headers (etcd's auth token as `authorization`). */
  headers?: Readonly<Record<string, string>>,
) => Promise<{ status: number; body: string }>;

/**
 * One GET of a dead-man's switch's push URL, redirects not followed, the body not read; resolves
 * to the HTTP status, rejects as `fetch` does.
 */
export type DeadmanPing = (url: URL, signal: AbortSignal) => Promise<number>;

/** What a path is, as `lstat` tells: a link is not followed. */
export interface FileInfo {
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
  /** The permission bits (0o7777). */
  mode: number;
  uid: number | null;
  size: number;
  /** Its inode number and device, where the platform tells them. */
  ino?: number | null;
  dev?: number | null;
  /** Whether it is a unix socket, where the platform tells it. */
  isSocket?: boolean | null;
}

/** The most {@link Fs.readTextFile} reads unless told otherwise. */
export const MAX_TEXT_FILE = 4 * 1024 * 1024;

/** The few filesystem questions php-relaunch asks, and the one name it removes outside its folders. */
export interface Fs {
  /** Whether `path` exists (following links). */
  exists(path: string): Promise<boolean>;
  /** Whether `path` is a regular file with an execute bit. */
  isExecutable(path: string): Promise<boolean>;
  /**
   * What `path` is (not following a final link), or null when it does not exist.
   * @throws {Deno.errors.NotCapable} outside what the permissions let us read; others unchanged.
   */
  info(path: string): Promise<FileInfo | null>;
  /** Entry names of a directory; empty when it does not exist. */
  listDir(path: string): Promise<string[]>;
  /**
   * One of root's own regular files (the configuration, php-fpm's in /etc), links followed, at
   * most `maxBytes` (default {@link MAX_TEXT_FILE}); never blocks (a named pipe is refused).
   * @throws {Error} when it is not a regular file (a folder, a device that never ends) or larger.
   */
  readTextFile(path: string, maxBytes?: number): Promise<string>;
  /**
   * A file another user can write or replace (a pid file in www-data's /run/php, a pool's logs):
   * refused when the path is a link or not a regular file, or, with `owners`, owned by another
   * uid or one of several names of a file (a hard link); never blocks, never takes longer than
   * a moment.
   * @throws {Deno.errors.NotFound} when it does not exist; {Error} naming why it is refused.
   */
  readUntrusted(path: string, read: UntrustedRead): Promise<string>;
  /**
   * The whole lines of a log another user may write, from byte `from` on (from its start when it
   * is no longer the file of inode `ino`, or shorter than `from`), read as {@link readUntrusted}
   * reads: at most its newest `maxBytes`.
   * @throws as {@link readUntrusted}.
   */
  readUntrustedFrom(
    path: string,
    read: UntrustedRead & { from: number; ino: number | null },
  ): Promise<LogLines>;
  /**
   * Removes the name `path` (a link itself, never what it points to); a missing one is no error.
   * Only for a pid file before an init script's start (see act/pid_file.ts).
   */
  removeName(path: string): Promise<void>;
}

/** How a file another user can write is read. */
export interface UntrustedRead {
  /** The most read; a larger file is refused, unless `tail`. */
  maxBytes: number;
  /** Its last `maxBytes` from a line start, for logs. */
  tail?: boolean;
  /** The uids that may own it (root, the pool's user). */
  owners?: readonly number[];
}

/** What {@link Fs.readUntrustedFrom} read. */
export interface LogLines {
  /** Whole lines only: one still being written is left for the next read. */
  text: string;
  /** Where the next read starts (bytes). */
  end: number;
  /** The file's inode number (null where the platform has none). */
  ino: number | null;
  /** The read started over at the file's beginning: another file (rotated), or truncated. */
  restarted: boolean;
  /** Bytes not read because more than `maxBytes` were new. */
  skipped: number;
}

/** Facts about this host and process. */
export interface Host {
  hostname(): string;
  /** The effective user id, or null where the platform has none. */
  uid(): number | null;
  env(name: string): string | undefined;
  /** The operating system, as `Deno.build.os` names it. */
  os(): string;
  /** Whether stderr is a terminal (a person is watching): log lines go there too. */
  stderrIsTerminal(): boolean;
  /** Total and available memory in bytes, or null when the platform does not say. */
  memory(): { total: number; available: number } | null;
  /** Whether the permissions this process runs with let it read or write `path`. */
  allows(access: "read" | "write", path: string): boolean;
}

/** Everything with a side effect, passed down explicitly. */
/**
 * Whether a connection to the unix socket at `path` is taken within `timeoutMs`: true when it is
 * (or still pending then: a full backlog is a listener), false when refused or absent, null when
 * it cannot be told. Never throws.
 */
export type UnixListens = (path: string, timeoutMs: number) => Promise<boolean | null>;

/** A process watched until it exits: `exited` resolves then; `stop()` ends the watching. */
export interface ExitWatch {
  exited: Promise<void>;
  stop(): void;
}

export interface Deps {
  clock: Clock;
  runner: ProcessRunner;
  httpGet: HttpGet;
  fcgiGet: FcgiGet;
  /** Whether anything listens on the unix socket at `path` (connected, or still connecting). */
  unixListens: UnixListens;
  /**
   * Watches the process `pid` (php-fpm's master, as root's facts found it) until it exits;
   * `note` is a file of root's only folder the watcher may write the pid to.
   */
  watchExit: (pid: number, note: string) => ExitWatch;
  mailer: Mailer;
  webhookPost: WebhookPost;
  /** etcd's JSON gateway, for `[fleet]` (absent: the real one, see real.ts). */
  etcdPost?: EtcdPost;
  /** Tells a dead-man's switch (healthchecks.io, Uptime Kuma) that php-relaunch is alive. */
  deadmanPing: DeadmanPing;
  fs: Fs;
  host: Host;
  /** Where one-line errors and `--help` go. */
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}
