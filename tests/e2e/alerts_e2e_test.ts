/**
 * Alert delivery end to end, with nothing restarted (the heartbeat's port is closed: "nginx
 * down"): SMTP with required STARTTLS and AUTH, implicit TLS, local delivery through sendmail
 * (msmtp), a webhook, and alerts queued on disk while the channels are down, delivered by the
 * next run. The TLS certificate is made by the test; the servers are on loopback.
 */
import assert from "node:assert/strict";
import { ROOT, runCli, runDir } from "../support/cli.ts";
import { freePort, listening, sh, SmtpSink } from "./stack.ts";

/** The queued deliveries in an outbox folder. */
async function outboxFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".json")) names.push(e.name);
  return names;
}

/** A closed loopback port: the heartbeat is refused, which alerts and restarts nothing. */
const closedPort = freePort;

/** aiosmtpd with TLS and AUTH (tests/support/smtp_tls_server.py). */
class TlsSmtp {
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly child: Deno.ChildProcess,
  ) {}

  static async start(dir: string, mode: "starttls" | "tls"): Promise<TlsSmtp> {
    const port = closedPort();
    await Deno.mkdir(`${dir}/${mode}`, { recursive: true });
    const child = new Deno.Command("/usr/bin/python3", {
      args: [
        `${ROOT}/tests/support/smtp_tls_server.py`,
        String(port),
        `${dir}/${mode}/maildir`,
        mode,
        `${dir}/cert.pem`,
        `${dir}/key.pem`,
        "alice",
        "s3cret-pw",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    if (!(await listening(port, 20_000))) throw new Error("the TLS SMTP server did not start");
    return new TlsSmtp(port, `${dir}/${mode}`, child);
  }

  async mails(): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const e of Deno.readDir(`${this.dir}/maildir/new`)) {
        out.push(await Deno.readTextFile(`${this.dir}/maildir/new/${e.name}`));
      }
    } catch { /* none yet */ }
    return out;
  }

  auths(): Promise<string> {
    return Deno.readTextFile(`${this.dir}/auth.log`).catch(() => "");
  }

  async stop(): Promise<void> {
    this.child.kill("SIGTERM");
    await this.child.status;
  }
}

/** A loopback webhook receiver answering `status()`; keeps every JSON body. */
function webhookServer(status: () => number) {
  const bodies: Record<string, unknown>[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    bodies.push(await req.json());
    return new Response(null, { status: status() });
  });
  return { bodies, url: `http://127.0.0.1:${server.addr.port}/hook`, server };
}

/** A configuration with its own state folder: each step's alert is a new incident. */
function configFile(dir: string, name: string, mail: string): string {
  return `
[mail]
${mail}
from = "php-relaunch@example.org"

[log]
file = "${dir}/php-relaunch.log"

[state]
dir = "${dir}/state-${name}"
lock_dir = "${dir}"

[[target]]
name = "unused"
url = "http://127.0.0.1:47/"
`;
}

Deno.test({
  name: "e2e: alerts over STARTTLS+AUTH, implicit TLS, sendmail and a webhook; queued when down",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const work = await runDir("alerts-");
    const dir = work.path;
    const heartbeat = `http://127.0.0.1:${closedPort()}/php-heartbeat.php`;
    try {
      const cert = await sh("openssl", [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ]);
      assert.equal(cert.code, 0, cert.out);
      await Deno.writeTextFile(`${dir}/password`, "s3cret-pw\n", { mode: 0o600 });
      await Deno.chmod(`${dir}/password`, 0o600);

      for (const mode of ["starttls", "tls"] as const) {
        await t.step(`SMTP with ${mode}, AUTH, the server's certificate verified`, async () => {
          const smtp = await TlsSmtp.start(dir, mode);
          try {
            const config = `${dir}/${mode}.toml`;
            await Deno.writeTextFile(
              config,
              configFile(
                dir,
                mode,
                `smtp_host = "127.0.0.1"\nsmtp_port = ${smtp.port}\ntls = "${mode}"\nuser = "alice"\npassword_file = "${dir}/password"\nca_file = "${dir}/cert.pem"`,
              ),
            );
            const r = await runCli([heartbeat, "5", "ops@example.com", "--config", config]);
            assert.equal(r.code, 7, r.stderr);
            const mails = await smtp.mails();
            assert.equal(
              mails.length,
              1,
              `one mail; log: ${await Deno.readTextFile(`${dir}/php-relaunch.log`)}`,
            );
            assert.match(mails[0]!, /Subject: \S+ PHP heartbeat unreachable/);
            assert.equal((await smtp.auths()).trim(), "alice ok");
            const log = await Deno.readTextFile(`${dir}/php-relaunch.log`);
            assert.doesNotMatch(
              log + r.stdout + r.stderr,
              /s3cret-pw/,
              "the password is never written",
            );
            const check = await runCli(["check-config", heartbeat, "--config", config]);
            assert.match(
              check.stdout,
              new RegExp(`127\\.0\\.0\\.1:${smtp.port} \\(TLS ${mode}, as alice\\)`),
            );
            assert.doesNotMatch(check.stdout, /s3cret-pw/);
          } finally {
            await smtp.stop();
          }
        });
      }

      await t.step(
        "a password file others can read is refused before anything is done",
        async () => {
          await Deno.chmod(`${dir}/password`, 0o644);
          const config = `${dir}/open.toml`;
          await Deno.writeTextFile(
            config,
            configFile(dir, "open", `user = "alice"\npassword_file = "${dir}/password"`),
          );
          const r = await runCli([heartbeat, "5", "ops@example.com", "--config", config]);
          assert.equal(r.code, 2);
          assert.match(
            r.stderr,
            /Refusing SMTP password file .* mode 0644 lets others read it; chmod 600/,
          );
          await Deno.chmod(`${dir}/password`, 0o600);
        },
      );

      await t.step(
        "local delivery through sendmail (msmtp, relaying to an SMTP server)",
        async () => {
          const sink = await SmtpSink.start();
          try {
            // msmtp reads $XDG_CONFIG_HOME/msmtp/config
            const home = `${dir}/xdg`;
            await Deno.mkdir(`${home}/msmtp`, { recursive: true });
            await Deno.writeTextFile(
              `${home}/msmtp/config`,
              `account default\nhost 127.0.0.1\nport ${sink.port}\nfrom php-relaunch@example.org\nauth off\ntls off\n`,
              { mode: 0o600 },
            );
            await Deno.chmod(`${home}/msmtp/config`, 0o600);
            const r = await runCli(
              [
                heartbeat,
                "5",
                "ops@example.com",
                "--mail-transport",
                "sendmail",
                "--log-file",
                `${dir}/sm.log`,
                "--state-dir",
                `${dir}/sm-state`,
                "--lock-file",
                `${dir}/sm.lock`,
              ],
              { env: { XDG_CONFIG_HOME: home } },
            );
            assert.equal(r.code, 7, r.stderr);
            const mails = await sink.messages();
            assert.equal(mails.length, 1, await Deno.readTextFile(`${dir}/sm.log`));
            assert.deepEqual(mails[0]!.rcptTo, ["ops@example.com"]);
            assert.match(mails[0]!.subject, /PHP heartbeat unreachable/);
          } finally {
            await sink.stop();
          }
        },
      );

      await t.step("a webhook gets the alert as JSON with Slack's text field", async () => {
        const hook = webhookServer(() => 204);
        try {
          const r = await runCli([
            heartbeat,
            "5",
            "",
            "--webhook",
            hook.url,
            "--log-file",
            `${dir}/wh.log`,
            "--state-dir",
            `${dir}/wh-state`,
            "--lock-file",
            `${dir}/wh.lock`,
          ]);
          assert.equal(r.code, 7, r.stderr);
          assert.equal(hook.bodies.length, 1);
          const body = hook.bodies[0]!;
          assert.match(String(body.text), /PHP heartbeat unreachable/);
          assert.match(String(body.line), /refused PHP not restarted: heartbeat .* unreachable/);
          assert.ok(Array.isArray(body.details));
        } finally {
          await hook.server.shutdown();
        }
      });

      await t.step(
        "channels down: alerts are queued on disk and delivered by the next run",
        async () => {
          let webhookStatus = 503;
          const hook = webhookServer(() => webhookStatus);
          const smtpPort = closedPort();
          const args = [
            heartbeat,
            "5",
            "ops@example.com",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            String(smtpPort),
            "--webhook",
            hook.url,
            "--log-file",
            `${dir}/q.log`,
            "--state-dir",
            `${dir}/q-state`,
            "--lock-file",
            `${dir}/q.lock`,
          ];
          try {
            const first = await runCli(args);
            assert.equal(
              first.code,
              7,
              "the verdict is not changed by a dead channel",
            );
            const queued = await outboxFiles(`${dir}/q-state/outbox`);
            assert.equal(queued.length, 2, "the mail and the webhook wait in the outbox");
            const log = await Deno.readTextFile(`${dir}/q.log`);
            assert.match(
              log,
              /Mail to ops@example\.com through 127\.0\.0\.1:\d+ \(TLS auto\) failed, queued for the next run/,
            );
            assert.match(
              log,
              /Webhook .* failed, queued for the next run: the webhook answered HTTP 503/,
            );

            // the channels are back: the next run delivers the queued alerts before its own
            webhookStatus = 200;
            const sink = await SmtpSink.startOn(smtpPort);
            try {
              const second = await runCli(args);
              assert.equal(second.code, 7);
              // the same incident goes on: no new alert, only the queued ones
              const mails = await sink.messages();
              assert.equal(mails.length, 1, "the queued mail");
              assert.match(mails[0]!.body, /refused PHP not restarted/);
              assert.equal(
                hook.bodies.length,
                2,
                "refused with 503, then delivered from the queue",
              );
              assert.deepEqual(hook.bodies[1], hook.bodies[0], "the same alert, not a new one");
              const left = await outboxFiles(`${dir}/q-state/outbox`);
              assert.equal(left.length, 0, "nothing left in the outbox");
              assert.match(
                await Deno.readTextFile(`${dir}/q.log`),
                /Delivered mail .* queued since/,
              );
            } finally {
              await sink.stop();
            }
          } finally {
            await hook.server.shutdown();
          }
        },
      );
    } finally {
      await work.remove();
    }
  },
});
