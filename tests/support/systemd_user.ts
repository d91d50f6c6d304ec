/**
 * A real systemd, for the shipped unit's service semantics on machines whose PID 1 is not
 * systemd: a user manager (`systemd --user`, running as root) in a private mount namespace and a
 * cgroup of its own. It runs units exactly as PID 1 does for Type=notify, NotifyAccess,
 * WatchdogSec, Restart=, ExecReload and the exit status; only some sandboxing directives differ
 * (see `userManagerArtifacts`).
 */
import { ROOT } from "./cli.ts";
import { waitFor } from "../e2e/stack.ts";

const SYSTEMD = "/lib/systemd/systemd";

/**
 * Directives that a user manager applies differently from PID 1, so a test unit drops them:
 * ProtectHome hides /run/user, where a user manager's notify socket lives (PID 1's is in
 * /run/systemd); ProtectKernelTunables and ProtectControlGroups make a user manager put an empty
 * tmpfs over /run.
 */
export const userManagerArtifacts = [
  "ProtectHome",
  "ProtectKernelTunables",
  "ProtectControlGroups",
];

/** Why a real systemd cannot run here, or null when it can. */
export async function systemdMissing(): Promise<string | null> {
  if (Deno.uid() !== 0) return "not root";
  const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
  if (!(await exists(SYSTEMD))) return `${SYSTEMD} is missing (Debian package systemd)`;
  for (const tool of ["/usr/bin/unshare", "/usr/bin/systemctl", "/usr/bin/python3"]) {
    if (!(await exists(tool))) return `${tool} is missing`;
  }
  const mounts = await Deno.readTextFile("/proc/mounts");
  if (!mounts.split("\n").some((l) => l.split(" ")[2] === "cgroup2")) return "no cgroup2 mounted";
  return null;
}

/** What `systemctl --user` printed. */
export interface Ctl {
  code: number;
  stdout: string;
  stderr: string;
}

/** A running user manager; `stop()` ends it and removes its cgroup. */
export class UserManager {
  private constructor(
    private readonly child: Deno.ChildProcess,
    private readonly runtimeDir: string,
    private readonly cgroup: string,
    private readonly log: string,
    /** Where units go: the manager's runtime unit folder. */
    readonly unitDir: string,
  ) {}

  /** Starts a manager whose runtime and configuration folders are below `dir`. */
  static async start(dir: string): Promise<UserManager> {
    const runtimeDir = `${dir}/xdg-runtime`;
    const configDir = `${dir}/xdg-config`;
    await Deno.mkdir(runtimeDir, { mode: 0o700 });
    await Deno.mkdir(configDir, { mode: 0o700 });
    const cgroup = `php-relaunch-test-${Deno.pid}`;
    const log = `${dir}/systemd.log`;
    const child = new Deno.Command("/usr/bin/unshare", {
      args: ["-m", "/bin/sh", `${ROOT}/tests/support/systemd_boot.sh`, cgroup, log],
      clearEnv: true,
      env: {
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        HOME: "/root",
        XDG_RUNTIME_DIR: runtimeDir,
        // a user manager's StateDirectory= and its user units live here, not in /root/.config
        XDG_CONFIG_HOME: configDir,
      },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const unitDir = `${runtimeDir}/systemd/user`;
    const manager = new UserManager(child, runtimeDir, cgroup, log, unitDir);
    const up = await waitFor(
      async () => (await manager.systemctl(["show", "--property=Version"])).code === 0,
      20_000,
    );
    if (up === null) {
      const err = await manager.stop();
      throw new Error(`systemd --user did not start: ${err}`);
    }
    await Deno.mkdir(unitDir, { recursive: true });
    return manager;
  }

  async systemctl(args: string[]): Promise<Ctl> {
    const out = await new Deno.Command("/usr/bin/systemctl", {
      args: ["--user", "--no-pager", ...args],
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin", XDG_RUNTIME_DIR: this.runtimeDir },
      stdin: "null",
      signal: AbortSignal.timeout(60_000),
    }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
    return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
  }

  /** A unit's properties, from `systemctl show`. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const out = await this.systemctl(["show", unit, ...props.map((p) => `--property=${p}`)]);
    return Object.fromEntries(
      out.stdout.split("\n").filter((l) => l.includes("=")).map((l) => {
        const at = l.indexOf("=");
        return [l.slice(0, at), l.slice(at + 1)];
      }),
    );
  }

  /** Ends the manager (its units first), waits for it, removes its cgroup; what it printed. */
  async stop(): Promise<string> {
    await this.systemctl(["exit"]).catch(() => {});
    const exited = await Promise.race([
      this.child.status.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 30_000)),
    ]);
    if (!exited) {
      try {
        this.child.kill("SIGKILL");
      } catch { /* already gone */ }
      await this.child.status;
    }
    await removeCgroup(this.cgroup);
    return (await Deno.readTextFile(this.log).catch(() => "")).trim();
  }
}

/** Removes the manager's cgroup, deepest folders first (the kernel refuses a non-empty one). */
async function removeCgroup(name: string): Promise<void> {
  const mounts = await Deno.readTextFile("/proc/mounts");
  const root = mounts.split("\n").map((l) => l.split(" ")).find((f) => f[2] === "cgroup2")?.[1];
  if (root === undefined) return;
  const dirs: string[] = [];
  const walk = async (path: string) => {
    dirs.push(path);
    for await (const e of Deno.readDir(path)) {
      if (e.isDirectory) await walk(`${path}/${e.name}`);
    }
  };
  const top = `${root}/${name}`;
  if (!(await Deno.stat(top).then(() => true, () => false))) return;
  await walk(top);
  for (const dir of dirs.reverse()) {
    // a cgroup empties a moment after its last process exits
    await waitFor(() => Deno.remove(dir).then(() => true, () => false), 10_000, 200);
  }
}
