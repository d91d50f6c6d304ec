/**
 * The real adapters of every port of `shared/deps.ts`, assembled where the program starts: the
 * clock, processes, network (HTTP, FastCGI, mail, webhook), filesystem and host.
 */
import { realRunner } from "./act/process.ts";
import { nodeMailer } from "./alert/mail.ts";
import { directWebhookPost } from "./alert/webhook.ts";
import { directEtcdPost } from "./act/etcd.ts";
import { directDeadmanPing } from "./alert/deadman_switch.ts";
import { directFcgiGet, unixListens } from "./probe/fcgi.ts";
import { masterExitWatch } from "./act/exit_watch.ts";
import { directHttpGet } from "./probe/http.ts";
import { type Clock, type Deps, type Fs, type Host, MAX_TEXT_FILE } from "./shared/deps.ts";
import { writeAllSync } from "./shared/log.ts";
import { readRegularFrom, readRegularText } from "./shared/safe_file.ts";

const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener("abort", done, { once: true });
    }),
};

const realFs: Fs = {
  async exists(path) {
    try {
      await Deno.stat(path);
      return true;
    } catch {
      return false;
    }
  },
  async isExecutable(path) {
    try {
      const info = await Deno.stat(path);
      return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  },
  async info(path) {
    try {
      const i = await Deno.lstat(path);
      return {
        isFile: i.isFile,
        isDirectory: i.isDirectory,
        isSymlink: i.isSymlink,
        mode: (i.mode ?? 0) & 0o7777,
        uid: i.uid,
        size: i.size,
        ino: i.ino,
        dev: i.dev,
        isSocket: i.isSocket,
      };
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  },
  readTextFile: (path, maxBytes = MAX_TEXT_FILE) =>
    readRegularText(path, { maxBytes, follow: true }),
  readUntrusted: (path, read) => readRegularText(path, read),
  readUntrustedFrom: (path, read) => readRegularFrom(path, read),
  removeName: (path) =>
    Deno.remove(path).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }),
  async listDir(path) {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(path)) names.push(entry.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return names;
  },
};

const realHost: Host = {
  hostname: () => Deno.hostname(),
  uid: () => Deno.uid(),
  env: (name) => Deno.env.get(name),
  os: () => Deno.build.os,
  stderrIsTerminal: () => Deno.stderr.isTerminal(),
  allows: (access, path) => Deno.permissions.querySync({ name: access, path }).state === "granted",
  memory: () => {
    try {
      const m = Deno.systemMemoryInfo();
      return { total: m.total, available: m.available };
    } catch {
      return null;
    }
  },
};

const encoder = new TextEncoder();

/** The real clock, processes, network, mail, filesystem and host. */
export function realDeps(): Deps {
  return {
    clock: realClock,
    runner: realRunner,
    httpGet: directHttpGet,
    fcgiGet: directFcgiGet,
    unixListens,
    watchExit: (pid, note) => masterExitWatch(pid, note),
    mailer: nodeMailer,
    webhookPost: directWebhookPost,
    etcdPost: directEtcdPost,
    deadmanPing: directDeadmanPing,
    fs: realFs,
    host: realHost,
    stdout: (text) => writeAllSync(Deno.stdout, encoder.encode(text)),
    stderr: (text) => writeAllSync(Deno.stderr, encoder.encode(text)),
  };
}
