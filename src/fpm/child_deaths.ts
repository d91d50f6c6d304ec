/**
 * Children that php-fpm's master saw die on a signal, from its error log: php-fpm 8.2 writes
 * `[03-Dec-2026 10:00:01] WARNING: [pool www] child 1234 exited on signal 11 (SIGSEGV - core
 * dumped) after 0.52 seconds from start` (to syslog: `[WARNING] [pool www] child ...`). Pure:
 * lines in, deaths out.
 */

/** One child that exited on a signal, as php-fpm's master logged it. */
export interface ChildDeath {
  /** When the master logged it (ms since the epoch). */
  at: number;
  pool: string;
  pid: number;
  /** The signal's number (11). */
  signal: number;
  /** Its name as php-fpm wrote it ("SIGSEGV"), or the number when it wrote none. */
  name: string;
  core: boolean;
}

/**
 * The signals whose default action is a core dump, that a process gets for its own fault (a bad
 * address, an abort, an illegal instruction...): a crash. SIGQUIT, also one, is how php-fpm ends
 * its own idle children (and it logs that as a NOTICE). SIGKILL and SIGTERM come from someone
 * else (the OOM killer, request_terminate_timeout, a stop): counted, but no crash.
 */
const CRASH_SIGNALS = new Set([4, 5, 6, 7, 8, 11, 24, 25, 31]);

/** Whether a death on `signal` is a crash of the child itself. */
export function isCrash(signal: number): boolean {
  return CRASH_SIGNALS.has(signal);
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** A pool's name as php-fpm accepts one (bounded, so a forged line cannot grow the state). */
const POOL = "([A-Za-z0-9][A-Za-z0-9._@+-]{0,63})";
/**
 * What follows the level, anchored: a worker's own output ("child 12 said into stderr: ...")
 * cannot match, its text comes after php-fpm's prefix.
 */
const DEATH =
  `\\[pool ${POOL}\\] child (\\d{1,9}) exited on signal (\\d{1,2}) \\((SIG[A-Z0-9]{1,12})?( - core dumped)?\\) after `;
/** With `log_level = debug`, php-fpm names where it logged from: "pid 812, fpm_children_bury(), line 256: ". */
const WHERE = "(?:pid \\d+, )?(?:\\w{1,64}\\(\\), line \\d+: )?";
const FILE_LINE = new RegExp(
  `^\\[(\\d{2})-([A-Z][a-z]{2})-(\\d{4}) (\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,6}))?\\] WARNING: ${WHERE}${DEATH}`,
);
/** `journalctl -o short-unix`: "1764756001.123456 host ident[pid]: [WARNING] [pool www] ...". */
const JOURNAL_LINE = new RegExp(
  `^(\\d{9,11})(?:\\.(\\d{1,6}))? \\S+ \\S+: \\[WARNING\\] ${WHERE}${DEATH}`,
);

function death(
  at: number,
  m: RegExpExecArray,
  from: number,
): ChildDeath | null {
  const [pool, pid, signal, name, core] = m.slice(from, from + 5);
  if (!Number.isFinite(at) || pool === undefined) return null;
  return {
    at,
    pool,
    pid: Number(pid),
    signal: Number(signal),
    name: name ?? String(signal),
    core: core !== undefined,
  };
}

/**
 * The deaths in lines of php-fpm's error log file. Its times are the host's local time, as the
 * master (started by the init system, in the host's zone) writes them.
 */
export function parseFileDeaths(lines: readonly string[]): ChildDeath[] {
  const out: ChildDeath[] = [];
  for (const line of lines) {
    const m = FILE_LINE.exec(line);
    if (m === null) continue;
    const [, day, month, year, h, min, s, fraction] = m;
    const at = new Date(
      Number(year),
      MONTHS.indexOf(month!),
      Number(day),
      Number(h),
      Number(min),
      Number(s),
      Math.floor(Number(`0.${fraction ?? 0}`) * 1000),
    ).getTime();
    if (MONTHS.indexOf(month!) < 0) continue;
    const d = death(at, m, 8);
    if (d !== null) out.push(d);
  }
  return out;
}

/** The deaths in the journal's lines (`journalctl -o short-unix`), where php-fpm logs to syslog. */
export function parseJournalDeaths(lines: readonly string[]): ChildDeath[] {
  const out: ChildDeath[] = [];
  for (const line of lines) {
    const m = JOURNAL_LINE.exec(line);
    if (m === null) continue;
    const at = Number(m[1]) * 1000 + Math.floor(Number(`0.${m[2] ?? 0}`) * 1000);
    const d = death(at, m, 3);
    if (d !== null) out.push(d);
  }
  return out;
}

/** Linux's numbers of the signals php-fpm names. */
const NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGSYS: 31,
};

/** A signal for people: "signal 11 (SIGSEGV)", from the name php-fpm wrote. */
export function signalLabel(name: string): string {
  const n = NUMBERS[name];
  return n === undefined ? `signal ${name}` : `signal ${n} (${name})`;
}
