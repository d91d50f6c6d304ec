/**
 * Watch mode against Debian's php8.2-fpm as installed, with www-data (who owns /run/php) and
 * nobody as the attackers: the pid file flipped under a running watch, pointed at another
 * instance's master, removed; a process of nobody's named and titled as the master; www-data
 * answering at the pool's socket path. None of it changes what is restarted or killed, nor how
 * soon. Everything is restored at the end.
 */
import assert from "node:assert/strict";
import { runDir } from "../support/cli.ts";
import { WatchProcess, writeConfigToml } from "./watch_process.ts";
import {
  alive,
  FPM_PROCESS,
  HEARTBEAT,
  heartbeat,
  heartbeatOf,
  SecondPool,
  sh,
  SmtpSink,
  Stack,
  waitFor,
} from "./stack.ts";

const CONF = "/etc/php/8.2/fpm/php-fpm.conf";
const PID_FILE = "/run/php/php8.2-fpm.pid";
const TITLE = `php-fpm: master process (${CONF})`;

/** The first pool's master, by what only root can make true (not by its pid file). */
async function master(): Promise<number | null> {
  const r = await sh("ps", ["-C", FPM_PROCESS, "-o", "pid=,ruid=,ppid=,args="]);
  for (const line of r.out.split("\n")) {
    const [pid, ruid, ppid, ...title] = line.trim().split(/\s+/);
    if (ruid === "0" && ppid === "1" && title.join(" ") === TITLE && alive(Number(pid))) {
      return Number(pid);
    }
  }
  return null;
}

/** The live processes of the process group `pgid`. */
async function group(pgid: number): Promise<number[]> {
  const r = await sh("pgrep", ["-g", String(pgid), "-x", FPM_PROCESS]);
  return r.code === 0 ? r.out.split("\n").map(Number).filter((p) => p > 0 && alive(p)) : [];
}

/** Sends `signal` to every process of the first pool; their pids. */
async function hitFirstPool(signal: Deno.Signal): Promise<number[]> {
  const m = await master();
  assert.ok(m !== null, "the first pool runs");
  const pids = await group(m);
  for (const pid of pids) Deno.kill(pid, signal);
  return pids;
}

/** Runs `script` with sh as `user`, in a process group of its own (ended by `stop`). */
function asUser(user: string, script: string): { stop(): Promise<void> } {
  const child = new Deno.Command("/usr/sbin/runuser", {
    args: ["-u", user, "--", "/bin/sh", "-c", script],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  return {
    async stop() {
      try {
        Deno.kill(-child.pid, "SIGKILL");
      } catch { /* ended */ }
      await child.status;
    },
  };
}

/**
 * www-data moving php-fpm's socket `sock` to `aside` and answering at its path for up to 60 s
 * (accept, close), bound by the name `bindName`.
 */
function impostorAt(sock: string, aside: string, bindName = sock): { stop(): Promise<void> } {
  const server = `import socket\ns=socket.socket(socket.AF_UNIX)\ns.bind("${bindName}")\n` +
    `s.listen(8)\nwhile True:\n    c,_=s.accept()\n    c.close()\n`;
  return asUser(
    "www-data",
    `mv -f ${sock} ${aside} && exec timeout --foreground 60 python3 -c '${server}'`,
  );
}

/** Writes `text` into the pid file as www-data can (its folder is www-data's): replaced whole. */
function asWwwData(script: string): Promise<{ code: number; out: string }> {
  return sh("runuser", ["-u", "www-data", "--", "/bin/sh", "-c", script]);
}

/** Gives the pid file back its truth, as root: the master's pid (for the init script's stop). */
async function restorePidFile(): Promise<void> {
  const m = await master();
  if (m !== null) await Deno.writeTextFile(PID_FILE, `${m}\n`);
}

Deno.test({
  name: "e2e: hostile www-data and nobody against a running watch on Debian's php8.2-fpm",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stack = await Stack.up();
    const smtp = await SmtpSink.start();
    const work = await runDir("hostile-");
    const dir = work.path;
    await SecondPool.create();
    const config = await writeConfigToml({
      dir,
      smtpPort: smtp.port,
      targets: `[[target]]\nname = "a"\nurl = "${HEARTBEAT}"\nservice = "php8.2-fpm"\n`,
      // each step restarts once: flap protection is not what is tested here
      defaults: "max_restarts = 10",
    });
    const watch = WatchProcess.start(config, `${dir}/watch.log`);
    const restarts = async () =>
      (await watch.lines()).filter((l) => /PHP restarted/.test(l)).length;
    /** Waits for the heartbeat after a fault; the time it took, or fails. */
    const back = async (what: string) => {
      const took = await waitFor(async () => (await heartbeat(1000)) === "200", 30_000, 100);
      assert.notEqual(
        took,
        null,
        `${what}: the heartbeat answers again\n${(await watch.lines()).join("\n")}`,
      );
      return took!;
    };
    try {
      assert.ok(await watch.waitForLine(/Watching 1 targets/, 30_000), "started");
      await new Promise((r) => setTimeout(r, 1500));

      await t.step(
        "the pid file flipped every 0.4 s: a crash is still restarted at once",
        async () => {
          const real = await master();
          const flipper = asUser(
            "www-data",
            `for i in $(seq 1 300); do echo 4242 >/run/php/.f.$$ && mv -f /run/php/.f.$$ ${PID_FILE}; ` +
              `sleep 0.2; echo ${real} >/run/php/.f.$$ && mv -f /run/php/.f.$$ ${PID_FILE}; sleep 0.2; done`,
          );
          try {
            await new Promise((r) => setTimeout(r, 3000));
            const before = await restarts();
            const killed = await hitFirstPool("SIGKILL");
            const took = await back("SIGKILL under a flipping pid file");
            assert.ok(took < 10_000, `200 again after ${took} ms`);
            assert.ok(killed.every((p) => !alive(p)));
            assert.ok(await watch.waitForLine(/502 PHP restarted|refused PHP restarted/, 10_000));
            assert.equal(await restarts(), before + 1, "one restart");
            const lines = await watch.lines();
            assert.ok(!lines.some((l) => /changed without us/.test(l)), lines.join("\n"));
            // deno-lint-ignore no-console -- a figure worth seeing in CI output
            console.log(`  SIGKILL while www-data flips the pid file: 200 after ${took} ms`);
          } finally {
            await flipper.stop();
            await restorePidFile();
          }
        },
      );

      await t.step(
        "the pid file naming another instance's master: only this pool is killed",
        async () => {
          const other = await SecondPool.master();
          assert.ok(other !== null);
          const otherPids = await SecondPool.pids();
          const set = await asWwwData(
            `echo ${other} >/run/php/.p && mv -f /run/php/.p ${PID_FILE}`,
          );
          assert.equal(set.code, 0, set.out);
          try {
            const stopped = await hitFirstPool("SIGSTOP");
            await back("SIGSTOP with the pid file on another master");
            for (const pid of stopped) {
              try {
                Deno.kill(pid, "SIGCONT");
              } catch { /* killed */ }
            }
            assert.ok(stopped.every((p) => !alive(p)), "the stopped pool was ended");
            assert.equal(await SecondPool.master(), other, "the other master is untouched");
            assert.ok(otherPids.every(alive), "and every process of its pool");
            assert.equal(await heartbeatOf(SecondPool.heartbeat), "200");
          } finally {
            await restorePidFile();
          }
        },
      );

      await t.step(
        "the pid file removed: no process of another instance is killed by name",
        async () => {
          const other = await SecondPool.master();
          const otherPids = await SecondPool.pids();
          assert.equal((await asWwwData(`rm -f ${PID_FILE}`)).code, 0);
          try {
            const stopped = await hitFirstPool("SIGSTOP");
            await back("SIGSTOP without a pid file");
            for (const pid of stopped) {
              try {
                Deno.kill(pid, "SIGCONT");
              } catch { /* killed */ }
            }
            assert.equal(await SecondPool.master(), other);
            assert.ok(otherPids.every(alive), "the other instance lives");
          } finally {
            await restorePidFile();
          }
        },
      );

      await t.step(
        "www-data's own php-fpm8.2 kept in the pid file by a tight loop: php-fpm is started all the same",
        async () => {
          // a php-fpm8.2 of www-data's: the init script's start-stop-daemon takes it for php-fpm
          const decoyDir = await Deno.makeTempDir({ prefix: "php-relaunch-decoy-" });
          await Deno.chmod(decoyDir, 0o755);
          await Deno.chown(decoyDir, 33, 33);
          await Deno.writeTextFile(
            `${decoyDir}/decoy.conf`,
            `[global]\npid = ${decoyDir}/d.pid\nerror_log = ${decoyDir}/err.log\n` +
              `[d]\nlisten = ${decoyDir}/d.sock\npm = static\npm.max_children = 1\n`,
          );
          const started = await asWwwData(`/usr/sbin/php-fpm8.2 -n -y ${decoyDir}/decoy.conf`);
          assert.equal(started.code, 0, started.out);
          const decoy = Number((await Deno.readTextFile(`${decoyDir}/d.pid`)).trim());
          assert.ok(alive(decoy), "the decoy runs");
          const keeper = asUser(
            "www-data",
            `end=$(($(date +%s) + 60)); while [ "$(date +%s)" -lt "$end" ]; do ` +
              `echo ${decoy} >/run/php/.d && mv -f /run/php/.d ${PID_FILE}; done`,
          );
          try {
            await new Promise((r) => setTimeout(r, 1000));
            await hitFirstPool("SIGKILL");
            const took = await back("SIGKILL with the pid file kept on a decoy");
            assert.ok(took < 20_000, `200 again after ${took} ms`);
            assert.ok(
              await watch.waitForLine(
                /took it for php-fpm; starting \/usr\/sbin\/php-fpm8\.2 itself/,
                5000,
              ),
              "the start made all the same is said",
            );
            assert.ok(alive(decoy), "www-data's process is not ours to kill");
          } finally {
            await keeper.stop();
            try {
              Deno.kill(-decoy, "SIGKILL");
            } catch { /* gone */ }
            await Deno.remove(decoyDir, { recursive: true }).catch(() => {});
            // the keeper's half-made file, when it was ended between its echo and its mv
            await Deno.remove("/run/php/.d").catch(() => {});
            await restorePidFile();
          }
        },
      );

      await t.step(
        "www-data listening at the pool's socket path: told who holds it, nothing restarted",
        async () => {
          const sock = "/run/php/php8.2-fpm.sock";
          const aside = `${sock}.moved`;
          // the last step's restart is told once its attempt is over: counted before this one
          await new Promise((r) => setTimeout(r, 1500));
          const before = await restarts();
          const real = await master();
          // www-data owns /run/php: it can move php-fpm's socket aside and answer at its path
          const impostor = impostorAt(sock, aside);
          try {
            const told = await watch.waitForLine(
              /held by pid \d+ \(python3, uid 33\), not by php-fpm's master/,
              20_000,
            );
            assert.ok(told, (await watch.lines()).join("\n"));
            assert.equal(
              await restarts(),
              before,
              `no restart while another process holds it\n${(await watch.lines()).join("\n")}`,
            );
            assert.equal(await master(), real, "php-fpm's master is left alone");
          } finally {
            await impostor.stop();
            await Deno.rename(aside, sock).catch(() => {});
          }
          await back("the socket given back");
        },
      );

      await t.step(
        "a folder at the socket path, then a listener bound by another spelling of it: told, nothing restarted",
        async () => {
          const sock = "/run/php/php8.2-fpm.sock";
          const aside = `${sock}.moved`;
          await new Promise((r) => setTimeout(r, 1500));
          const before = await restarts();
          const real = await master();
          const made = await asWwwData(`mv -f ${sock} ${aside} && mkdir ${sock}`);
          assert.equal(made.code, 0, made.out);
          let impostor: { stop(): Promise<void> } | null = null;
          try {
            assert.ok(
              await watch.waitForLine(
                /php8\.2-fpm\.sock is a folder of uid 33, not a socket/,
                20_000,
              ),
              (await watch.lines()).join("\n"),
            );
            assert.equal(await restarts(), before, (await watch.lines()).join("\n"));
            assert.equal(await master(), real, "php-fpm's master is left alone");
            // given back (a new incident then), a listener bound as /run/php//php8.2-fpm.sock
            await Deno.remove(sock);
            await Deno.rename(aside, sock);
            await back("the folder removed");
            // a healthy probe or two close the incident: the next one is told anew
            await new Promise((r) => setTimeout(r, 2000));
            impostor = impostorAt(sock, aside, sock.replace("/run/php/", "/run/php//"));
            assert.ok(
              await watch.waitForLine(
                /answered by a process that bound it by another name/,
                20_000,
              ),
              (await watch.lines()).join("\n"),
            );
            assert.equal(await restarts(), before, (await watch.lines()).join("\n"));
            assert.equal(await master(), real, "php-fpm's master is left alone");
          } finally {
            await impostor?.stop();
            await Deno.remove(sock).catch(() => {});
            await Deno.rename(aside, sock).catch(() => {});
          }
          await back("the socket given back");
        },
      );

      await t.step(
        "nobody's process named and titled as the master: a crash is still certain",
        async () => {
          const bin = await Deno.makeTempDir({ prefix: "php-relaunch-hostile-" });
          await Deno.chmod(bin, 0o755);
          // cat, waiting on a pipe nobody writes to: a process whose whole title can be the master's
          await Deno.copyFile("/bin/cat", `${bin}/${FPM_PROCESS}`);
          await Deno.chmod(`${bin}/${FPM_PROCESS}`, 0o755);
          // its own session and group, the init system's child, the master's very title
          const fake = await sh("runuser", [
            "-u",
            "nobody",
            "--",
            "setsid",
            "-f",
            "bash",
            "-c",
            // (its output away from ours: sh() waits for the pipes to close)
            `exec </dev/null >/dev/null 2>&1; exec -a "${TITLE}" ${bin}/${FPM_PROCESS} < <(exec sleep 600)`,
          ]);
          assert.equal(fake.code, 0, fake.out);
          let fakePid: number | null = null;
          try {
            await waitFor(async () => {
              const r = await sh("pgrep", ["-u", "nobody", "-x", FPM_PROCESS]);
              fakePid = r.code === 0 ? Number(r.out.split("\n")[0]) : null;
              return fakePid !== null;
            }, 5000);
            assert.ok(fakePid !== null, "the look-alike runs");
            const seen = await sh("ps", ["-o", "ppid=,pgid=,args=", "-p", String(fakePid)]);
            assert.equal(
              seen.out.trim().replace(/\s+/g, " "),
              `1 ${fakePid} ${TITLE}`,
              "the init system's child, leading its group, with the master's very title",
            );
            const mailsBefore = (await smtp.messages()).length;
            await new Promise((r) => setTimeout(r, 1500));
            await hitFirstPool("SIGKILL");
            await back("SIGKILL beside a look-alike master");
            assert.ok(alive(fakePid!), "nobody's process is not ours to kill");
            await waitFor(
              async () =>
                (await smtp.messages()).slice(mailsBefore).some((m) =>
                  /(502|refused) PHP restarted/.test(m.body)
                ),
              10_000,
            );
            // this crash's restart (a 502 or a refused socket), not an earlier step's late mail
            const mail = (await smtp.messages()).slice(mailsBefore).find((m) =>
              / PHP restart /.test(m.subject) && /(502|refused) PHP restarted/.test(m.body)
            );
            assert.ok(mail, "the restart was mailed");
            assert.match(
              mail.body.replace(/=\n/g, ""),
              /Certain crash: master \d+ is (gone|a zombie) and no other php-fpm8\.2 master of \/etc\/php\/8\.2\/fpm\/php-fpm\.conf runs/,
            );
          } finally {
            if (fakePid !== null) {
              try {
                Deno.kill(fakePid, "SIGKILL");
              } catch { /* ended */ }
            }
            await Deno.remove(bin, { recursive: true });
          }
        },
      );

      assert.equal(await watch.stop(), 0);
    } finally {
      await watch.stop();
      await restorePidFile();
      await SecondPool.remove();
      await smtp.stop();
      await stack.healthy();
      await stack.down();
      await work.remove();
    }
  },
});
