/**
 * Every delivery ends in time, whatever the other side does: a mail server that trickles a line
 * every few seconds (SMTP's per-step timeouts never fire), a sendmail that never returns, a
 * channel that ignores its signal. What is not delivered goes to the outbox.
 */
import assert from "node:assert/strict";
import { nodeMailer } from "../../src/alert/mail.ts";
import { memoryOutbox } from "../../src/alert/outbox.ts";
import { AlertQueue, channels } from "../../src/alert/queue.ts";
import type { Mail } from "../../src/shared/deps.ts";
import { captureLogs, smtpRoute } from "../support/fakes.ts";
import { tricklingSmtp } from "../support/hostile.ts";

/** `work`, or a failure after `ms`: a guard that is broken fails its test instead of hanging it. */
async function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

const MAIL: Mail = {
  from: "php-relaunch@example.org",
  to: ["ops@example.com"],
  subject: "web1 PHP restart",
  text: "502 PHP restarted.\n",
};

Deno.test("a trickling mail server: the delivery ends at its limit, and its connection is closed", async () => {
  captureLogs();
  const server = tricklingSmtp(200);
  try {
    const deliver = channels(
      { mailer: nodeMailer, webhookPost: () => Promise.reject(new Error("no webhook")) },
      { mail: smtpRoute("127.0.0.1", server.port), webhook: null, alertmanager: null },
      1500,
    );
    const started = Date.now();
    await assert.rejects(
      within(deliver({ channel: "mail", mail: MAIL }, new AbortController().signal), 8000),
      /not delivered within 1\.5 s/,
    );
    const took = Date.now() - started;
    assert.ok(took >= 1400 && took < 4000, `ended after ${took} ms`);
    // the client's end of the connection is gone too: the server's next line fails
    const gone = Date.now();
    while (server.closed() === 0 && Date.now() - gone < 5000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(server.closed(), 1, "nodemailer closed the connection");
  } finally {
    await server.close();
  }
});

Deno.test("a sendmail that never returns is ended with its process group at the signal", async () => {
  captureLogs();
  const dir = await Deno.makeTempDir({ prefix: "php-relaunch-sendmail-" });
  const marker = `${dir}/alive`;
  try {
    // reads the message, then never exits (as a stuck local MTA)
    await Deno.writeTextFile(
      `${dir}/sendmail`,
      `#!/bin/sh\ncat >/dev/null\ntouch ${marker}\nexec sleep 300\n`,
      { mode: 0o755 },
    );
    const started = Date.now();
    await assert.rejects(
      within(
        nodeMailer(
          MAIL,
          { transport: "sendmail", path: `${dir}/sendmail` },
          AbortSignal.timeout(800),
        ),
        8000,
      ),
      /aborted|timed out/i,
    );
    assert.ok(Date.now() - started < 4000, `ended after ${Date.now() - started} ms`);
    assert.ok(await Deno.stat(marker).then(() => true, () => false), "the message was handed over");
    // nothing of it is left running
    const left = await new Deno.Command("/usr/bin/pgrep", { args: ["-f", `${dir}/sendmail`] })
      .output();
    assert.equal(left.code, 1, "the sendmail process is gone");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the queue's flush with a grace: what is still under way is ended and queued, not waited for", async () => {
  const logs = captureLogs();
  const outbox = memoryOutbox();
  // a channel that ignores its signal and never answers
  const queue = new AlertQueue(
    () => new Promise<void>(() => {}),
    outbox,
    {
      hostname: "web1",
      from: "php-relaunch@web1",
      to: ["ops@example.com"],
      webhook: null,
      alertmanager: null,
      via: "localhost:25",
    },
    () => 1000,
  );
  queue.send({ subject: "PHP restart", line: "502 PHP restarted.", details: [] });
  assert.equal(queue.idle, false);
  const started = Date.now();
  await within(queue.flush(200), 3000);
  assert.ok(Date.now() - started < 2000, `flushed after ${Date.now() - started} ms`);
  assert.equal(queue.idle, true);
  const queued = [...outbox.items.values()];
  assert.equal(queued.length, 1);
  assert.equal(queued[0]?.lastError, "not delivered before php-relaunch stopped");
  assert.match(logs.lines()[0]!, /failed, queued for the next run: not delivered before/);
});
