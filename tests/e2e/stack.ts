/**
 * The real stack for end-to-end tests: Debian's nginx and php8.2-fpm with this repo's samples,
 * and an aiosmtpd server on loopback. Everything it changes it restores, and it leaves services
 * running or stopped as it found them.
 */
import { ROOT } from "../support/cli.ts";
import { OPCACHE_SCRIPT } from "../../src/fpm/opcache.ts";

export const FPM_SERVICE = "php8.2-fpm";
export const FPM_PROCESS = "php-fpm8.2";
export const HEARTBEAT = "http://127.0.0.1:8889/php-heartbeat.php";
export const ALLOW_CONF = "/etc/nginx/conf.d/heartbeat_allowed.conf";

const decoder = new TextDecoder();

/** Runs a command to completion with a deadline; returns its exit code and output. */
export async function sh(
  cmd: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return { code: r.code, out: (decoder.decode(r.stdout) + decoder.decode(r.stderr)).trim() };
}

export async function must(cmd: string, args: string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}: ${r.out}`);
  return r.out;
}

/**
 * Pids of the live processes named exactly `name`. Zombies are left out: this machine's PID 1
 * reaps orphans late, and a killed master lingers as one for a while.
 */
export async function pids(name: string): Promise<number[]> {
  const r = await sh("pgrep", ["-x", name]);
  if (r.code !== 0) return [];
  return r.out.split("\n").map(Number).filter((pid) => pid > 0 && alive(pid));
}

/** Whether `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** php-fpm's master: the live process named in its pid file. */
export async function fpmMaster(): Promise<number | null> {
  const pid = Number(
    (await Deno.readTextFile(`/run/php/${FPM_SERVICE}.pid`).catch(() => "")).trim(),
  );
  return pid > 0 && alive(pid) ? pid : null;
}

/** The heartbeat's status, or the failure kind, with a short deadline. */
export function heartbeat(timeoutMs = 2000): Promise<string> {
  return heartbeatOf(HEARTBEAT, timeoutMs);
}

/** Polls `check` every `everyMs` until it is true or `withinMs` has passed; returns the time it took or null. */
export async function waitFor(
  check: () => Promise<boolean>,
  withinMs: number,
  everyMs = 100,
): Promise<number | null> {
  const start = Date.now();
  while (Date.now() - start < withinMs) {
    if (await check()) return Date.now() - start;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return null;
}

/** A loopback port nothing listens on (free a moment ago). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Waits until something accepts connections on loopback `port`; false after `withinMs`. */
export async function listening(port: number, withinMs: number): Promise<boolean> {
  const up = await waitFor(async () => {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      return false;
    }
  }, withinMs);
  return up !== null;
}

/** The system state the stack found, to restore it. */
export class Stack {
  private constructor(
    private readonly nginxWasRunning: boolean,
    private readonly fpmWasRunning: boolean,
    private readonly samplesWereInstalled: boolean,
    private readonly allowConf: string | null,
    /** The samples but OPcache's status script were in place: only the script is taken away. */
    private readonly allButOpcache = false,
  ) {}

  /** Installs what is missing and starts the services; throws with advice if packages are absent. */
  static async up(): Promise<Stack> {
    for (const bin of ["/usr/sbin/nginx", `/usr/sbin/${FPM_PROCESS}`, "/usr/bin/python3"]) {
      await Deno.stat(bin).catch(() => {
        throw new Error(
          `${bin} is missing: run .ci/run, or apt-get install nginx php8.2-fpm python3-aiosmtpd`,
        );
      });
    }
    const samples = await sh(`${ROOT}/scripts/samples.sh`, ["status"]);
    const stack = new Stack(
      (await pids("nginx")).length > 0,
      (await pids(FPM_PROCESS)).length > 0,
      samples.code === 0,
      await Deno.readTextFile(ALLOW_CONF).catch(() => null),
      // samples installed before the OPcache script was one of them
      samples.out === `missing ${OPCACHE_SCRIPT}`,
    );
    if (!stack.samplesWereInstalled) await must(`${ROOT}/scripts/samples.sh`, ["install"]);
    await stack.healthy();
    return stack;
  }

  /** Brings nginx and php-fpm back to serving the heartbeat (after a test broke them). */
  async healthy(): Promise<void> {
    if (this.allowConf !== null) await Deno.writeTextFile(ALLOW_CONF, this.allowConf);
    if ((await pids("nginx")).length === 0) await must("service", ["nginx", "start"]);
    else await must("service", ["nginx", "reload"]);
    if ((await heartbeat()) !== "200") {
      // a test may have stopped php-fpm (SIGSTOP): only its own service's processes are touched
      for (const pid of await pids(FPM_PROCESS)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await sh("service", [FPM_SERVICE, "start"]);
    }
    const ok = await waitFor(async () => (await heartbeat()) === "200", 20_000, 200);
    if (ok === null) throw new Error(`the heartbeat ${HEARTBEAT} does not answer 200`);
  }

  /** Restores the samples and the services' running state. */
  async down(): Promise<void> {
    if (this.allowConf !== null) await Deno.writeTextFile(ALLOW_CONF, this.allowConf);
    if (this.allButOpcache) {
      await Deno.remove(OPCACHE_SCRIPT).catch(() => {});
      await Deno.remove(OPCACHE_SCRIPT.slice(0, OPCACHE_SCRIPT.lastIndexOf("/"))).catch(() => {});
    } else if (!this.samplesWereInstalled) {
      await sh(`${ROOT}/scripts/samples.sh`, ["uninstall"]);
    }
    const nginxUp = (await pids("nginx")).length > 0;
    if (this.nginxWasRunning && !nginxUp) await sh("service", ["nginx", "start"]);
    if (!this.nginxWasRunning && nginxUp) await sh("service", ["nginx", "stop"]);
    const fpmUp = (await pids(FPM_PROCESS)).length > 0;
    if (this.fpmWasRunning && !fpmUp) await sh("service", [FPM_SERVICE, "start"]);
    if (!this.fpmWasRunning && fpmUp) await sh("service", [FPM_SERVICE, "stop"]);
  }
}

/** One received mail: its envelope and headers. */
export interface ReceivedMail {
  rcptTo: string[];
  mailFrom: string;
  subject: string;
  body: string;
}

/** A real SMTP server (aiosmtpd) on a free loopback port, storing mail in a Maildir. */
export class SmtpSink {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly child: Deno.ChildProcess,
  ) {}

  static start(): Promise<SmtpSink> {
    return SmtpSink.startOn(freePort());
  }

  /** A sink on a given loopback port. */
  static async startOn(port: number): Promise<SmtpSink> {
    const dir = await Deno.makeTempDir({ prefix: "php-relaunch-mail-" });
    const child = new Deno.Command("/usr/bin/python3", {
      args: [
        "-m",
        "aiosmtpd",
        "-n",
        "-l",
        `127.0.0.1:${port}`,
        "-c",
        "aiosmtpd.handlers.Mailbox",
        `${dir}/maildir`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const sink = new SmtpSink(port, dir, child);
    if (!(await listening(port, 20_000))) {
      await sink.stop();
      throw new Error("aiosmtpd did not start: apt-get install python3-aiosmtpd");
    }
    return sink;
  }

  /** Every mail received so far. */
  async messages(): Promise<ReceivedMail[]> {
    const mails: ReceivedMail[] = [];
    // python's Maildir makes its folders only where the path does not exist yet
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(`${this.dir}/maildir/new`)) names.push(entry.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    for (const name of names.sort()) {
      const entry = { name };
      const text = await Deno.readTextFile(`${this.dir}/maildir/new/${entry.name}`);
      const [head = "", ...rest] = text.split(/\r?\n\r?\n/);
      const header = (name: string) =>
        new RegExp(`^${name}: (.*)$`, "mi").exec(head)?.[1]?.trim() ?? "";
      mails.push({
        rcptTo: header("X-RcptTo").split(",").map((s) => s.trim()).filter(Boolean),
        mailFrom: header("X-MailFrom"),
        subject: header("Subject"),
        body: rest.join("\n\n"),
      });
    }
    return mails;
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.child.status;
    await Deno.remove(this.dir, { recursive: true });
  }
}

/**
 * A second php-fpm 8.2 instance, "php8.2-fpm-b": its own config, pid file, socket, init script
 * and nginx vhost on 127.0.0.1:8890. Same program, same process name as the first: only its
 * process group tells its processes apart. Everything is removed again by `remove`.
 */
/** What makes one extra php-fpm8.2 master (its own config, init script and pid file). */
export interface ExtraPoolOptions {
  /** Names it: service php8.2-fpm-<suffix>, pool <suffix>. */
  suffix: string;
  /** A heartbeat vhost on 127.0.0.1:<port> through nginx, or null for none. */
  nginxPort: number | null;
  /** The pool's own lines after user/group/listen. */
  poolLines: string[];
  /** More lines in the heartbeat vhost's server block (another location). */
  siteLines?: string[];
  /**
   * Added to php-fpm's command line in its init script (`-d opcache.memory_consumption=8`): what
   * the master reads before any pool, such as OPcache's size, which a pool cannot set.
   */
  daemonArgs?: string[];
}

/**
 * A second master of php8.2-fpm made by a test, as on hosts with several pools: its own
 * config, init script, pid file and unix socket. `remove()` takes all of it away again.
 */
export class ExtraPool {
  readonly service: string;
  readonly pidFile: string;
  readonly socket: string;
  readonly heartbeat: string;
  readonly files: { conf: string; init: string; site: string; errorLog: string };

  constructor(readonly options: ExtraPoolOptions) {
    const s = options.suffix;
    this.service = `php8.2-fpm-${s}`;
    this.pidFile = `/run/php/php8.2-fpm-${s}.pid`;
    this.socket = `/run/php/php8.2-fpm-${s}.sock`;
    this.heartbeat = `http://127.0.0.1:${options.nginxPort ?? 0}/php-heartbeat.php`;
    this.files = {
      conf: `/etc/php/8.2/fpm-${s}/php-fpm.conf`,
      init: `/etc/init.d/php8.2-fpm-${s}`,
      site: `/etc/nginx/sites-enabled/php-heartbeat-${s}`,
      errorLog: `/var/log/php8.2-fpm-${s}.log`,
    };
  }

  async create(): Promise<void> {
    const f = this.files;
    await Deno.mkdir(`/etc/php/8.2/fpm-${this.options.suffix}`, { recursive: true });
    await Deno.writeTextFile(
      f.conf,
      [
        "[global]",
        `pid = ${this.pidFile}`,
        `error_log = ${f.errorLog}`,
        `[${this.options.suffix}]`,
        "user = www-data",
        "group = www-data",
        `listen = ${this.socket}`,
        "listen.owner = www-data",
        "listen.group = www-data",
        ...this.options.poolLines,
        "",
      ].join("\n"),
    );
    const script = (await Deno.readTextFile("/etc/init.d/php8.2-fpm"))
      .replace("CONFFILE=/etc/php/8.2/fpm/php-fpm.conf", `CONFFILE=${f.conf}`)
      .replace("Provides:          php8.2-fpm", `Provides:          ${this.service}`);
    const args = this.options.daemonArgs ?? [];
    const daemonArgs = 'DAEMON_ARGS="--daemonize --fpm-config $CONFFILE"';
    if (args.length > 0 && !script.includes(daemonArgs)) {
      throw new Error(`/etc/init.d/php8.2-fpm has no line ${daemonArgs}`);
    }
    const init = args.length === 0
      ? script
      : script.replace(daemonArgs, `${daemonArgs.slice(0, -1)} ${args.join(" ")}"`);
    await Deno.writeTextFile(f.init, init, { mode: 0o755 });
    await Deno.chmod(f.init, 0o755);
    if (this.options.nginxPort !== null) {
      await Deno.writeTextFile(
        f.site,
        [
          "server {",
          `    listen 127.0.0.1:${this.options.nginxPort};`,
          "    access_log off;",
          "    root /var/www/php-heartbeat;",
          "    location = /php-heartbeat.php {",
          "        include fastcgi_params;",
          "        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;",
          `        fastcgi_pass unix:${this.socket};`,
          "    }",
          ...(this.options.siteLines ?? []),
          "}",
          "",
        ].join("\n"),
      );
    }
    await must("service", [this.service, "start"]);
    if (this.options.nginxPort === null) {
      const up = await waitFor(async () => (await this.master()) !== null, 20_000, 200);
      if (up === null) throw new Error(`${this.service} did not start`);
      return;
    }
    await must("service", ["nginx", "reload"]);
    const up = await waitFor(
      async () => (await heartbeatOf(this.heartbeat, 1000)) === "200",
      20_000,
      200,
    );
    if (up === null) throw new Error(`the ${this.service} pool does not answer`);
  }

  /** The pool's master, from its pid file. */
  async master(): Promise<number | null> {
    const pid = Number((await Deno.readTextFile(this.pidFile).catch(() => "")).trim());
    return pid > 0 && alive(pid) ? pid : null;
  }

  /** Pids of the pool's processes: its master's process group. */
  async pids(): Promise<number[]> {
    const master = await this.master();
    if (master === null) return [];
    const r = await sh("pgrep", ["-g", String(master), "-x", FPM_PROCESS]);
    return r.code === 0 ? r.out.split("\n").map(Number).filter((n) => n > 0 && alive(n)) : [];
  }

  async remove(): Promise<void> {
    for (const pid of await this.pids()) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    const f = this.files;
    for (const path of [f.site, f.init, f.conf, this.pidFile, this.socket]) {
      await Deno.remove(path).catch(() => {});
    }
    await Deno.remove(`/etc/php/8.2/fpm-${this.options.suffix}`, { recursive: true })
      .catch(() => {});
    if (this.options.nginxPort !== null && (await pids("nginx")).length > 0) {
      await sh("service", ["nginx", "reload"]);
    }
  }
}

/** The second pool of the watch-mode tests, behind its own heartbeat vhost on :8890. */
export const SecondPool = new ExtraPool({
  suffix: "b",
  nginxPort: 8890,
  poolLines: ["pm = static", "pm.max_children = 2"],
});

/** The status of any loopback heartbeat, or the failure kind. */
export async function heartbeatOf(url: string, timeoutMs = 2000): Promise<string> {
  const u = new URL(url);
  using client = Deno.createHttpClient({
    proxy: { transport: "tcp", hostname: u.hostname, port: Number(u.port) },
  });
  try {
    const res = await fetch(url, { client, signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return String(res.status);
  } catch (err) {
    return err instanceof DOMException ? "timeout" : "error";
  }
}

/** One alert as Alertmanager's `GET /api/v2/alerts` lists it. */
export interface ListedAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  status: { state: string };
}

/**
 * Debian's prometheus-alertmanager on a free loopback port, with its own configuration and
 * storage in a temporary folder (not the package's service, which is left alone).
 */
export class Alertmanager {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly child: Deno.ChildProcess,
  ) {}

  static async start(): Promise<Alertmanager> {
    const port = freePort();
    const dir = await Deno.makeTempDir({ prefix: "php-relaunch-am-" });
    await Deno.writeTextFile(
      `${dir}/alertmanager.yml`,
      'route:\n  receiver: "null"\n  group_wait: 1s\nreceivers:\n  - name: "null"\n',
    );
    const child = new Deno.Command("/usr/bin/prometheus-alertmanager", {
      args: [
        `--config.file=${dir}/alertmanager.yml`,
        `--storage.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
        // a single instance: no gossip port
        "--cluster.listen-address=",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const am = new Alertmanager(port, dir, child);
    const ready = await waitFor(
      async () => {
        try {
          const r = await fetch(`${am.url}/-/ready`, { signal: AbortSignal.timeout(1000) });
          await r.body?.cancel();
          return r.ok;
        } catch {
          return false;
        }
      },
      20_000,
      200,
    );
    if (ready === null) {
      await am.stop();
      throw new Error("Alertmanager did not start: apt-get install prometheus-alertmanager");
    }
    return am;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The alerts it holds now: active ones (resolved alerts are not listed). */
  async alerts(): Promise<ListedAlert[]> {
    const r = await fetch(`${this.url}/api/v2/alerts`, { signal: AbortSignal.timeout(5000) });
    return await r.json() as ListedAlert[];
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.child.status;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
