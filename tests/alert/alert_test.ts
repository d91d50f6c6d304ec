import assert from "node:assert/strict";
import { AlertQueue, channels, deliveriesOf, slackText } from "../../src/alert/queue.ts";
import type { Mail } from "../../src/shared/deps.ts";
import { describeRoute, smtpOptions } from "../../src/alert/mail.ts";
import {
  type Delivery,
  dropOrder,
  fileOutbox,
  memoryOutbox,
  OUTBOX_MAX_AGE_MS,
  OUTBOX_MAX_ITEMS,
  parseQueued,
  type QueuedDelivery,
  retryOutbox,
} from "../../src/alert/outbox.ts";
import { captureLogs, fakeMailer, smtpRoute } from "../support/fakes.ts";

/** A signal that never aborts: the caller lets the delivery take its own limit. */
const NEVER = new AbortController().signal;

const ALERT = {
  subject: "PHP restart",
  line: "2026-11-25T10:00:00Z web1 502 PHP restarted.",
  details: ["Heartbeat: http://127.0.0.1:8889/php-heartbeat.php", "Down for 2 s"],
};
const SETTINGS = {
  hostname: "web1",
  from: "php-relaunch@web1",
  to: ["ops@example.com"],
  webhook: new URL("https://hooks.example.com/T1/B2"),
  alertmanager: null,
  via: "localhost:25 (TLS auto)",
};
const SMTP = smtpRoute("mail.example.com", 587);

Deno.test("an alert becomes a mail to the recipients and a webhook POST with Slack's text", () => {
  const [mail, hook] = deliveriesOf(ALERT, SETTINGS, 0);
  assert.deepEqual(mail, {
    channel: "mail",
    mail: {
      from: "php-relaunch@web1",
      to: ["ops@example.com"],
      subject: "web1 PHP restart",
      text: `${ALERT.line}\n\n${ALERT.details.join("\n")}\n`,
    },
  });
  assert.equal(hook?.channel, "webhook");
  assert.ok(hook?.channel === "webhook");
  assert.ok(!JSON.stringify(hook).includes("T1/B2"), "the webhook's secret path is not queued");
  assert.equal(
    hook.body.text,
    "*web1 PHP restart*\n```\n" + [ALERT.line, ...ALERT.details].join("\n") + "\n```",
  );
  assert.deepEqual(hook.body.details, ALERT.details);
  assert.deepEqual(deliveriesOf(ALERT, { ...SETTINGS, to: [], webhook: null }, 0), []);
});

const INCIDENT = {
  id: "20261125-095958-000",
  target: "web",
  kind: "php_down",
  status: "firing" as const,
  since: Date.UTC(2026, 10, 25, 9, 59, 58),
};

Deno.test("an incident's alerts carry its id: subject tag, body line, webhook fields", () => {
  const [mail, hook] = deliveriesOf({ ...ALERT, incident: INCIDENT }, SETTINGS, 0);
  assert.ok(mail?.channel === "mail" && hook?.channel === "webhook");
  assert.equal(mail.mail.subject, "web1 PHP restart [web #20261125-095958-000]");
  assert.match(mail.mail.text, /\nIncident: 20261125-095958-000 \(web, php_down, firing\)\n$/);
  assert.equal(hook.body["incident_id"], "20261125-095958-000");
  assert.equal(hook.body.status, "firing");
  assert.equal(hook.body.target, "web");
  const resolved = deliveriesOf(
    { ...ALERT, incident: { ...INCIDENT, status: "resolved", endedAt: 5 } },
    SETTINGS,
    0,
  )[1];
  assert.ok(resolved?.channel === "webhook");
  assert.equal(resolved.body.status, "resolved");
  const [plain] = deliveriesOf(ALERT, { ...SETTINGS, to: [] }, 0);
  assert.ok(plain?.channel === "webhook" && plain.body["incident_id"] === undefined);
});

Deno.test("Alertmanager: an incident is one alert, firing until endsAt, resolved with endsAt", () => {
  const am = { ...SETTINGS, alertmanager: new URL("http://127.0.0.1:9093") };
  const now = INCIDENT.since + 2000;
  const [first] = deliveriesOf({ ...ALERT, incident: INCIDENT }, am, now);
  assert.ok(first?.channel === "alertmanager");
  assert.deepEqual(first.alerts, [{
    labels: {
      alertname: "PhpFpmDown",
      host: "web1",
      target: "web",
      kind: "php_down",
      incident: "20261125-095958-000",
      severity: "critical",
    },
    annotations: {
      summary: "web1 PHP restart",
      description: `${ALERT.line}\n${
        ALERT.details.join("\n")
      }\nIncident: 20261125-095958-000 (web, php_down, firing)`,
    },
    startsAt: "2026-11-25T09:59:58.000Z",
    endsAt: new Date(now + 4 * 60_000).toISOString(),
  }]);
  const ended = deliveriesOf(
    { ...ALERT, incident: { ...INCIDENT, status: "resolved", endedAt: now } },
    am,
    now + 9,
  )[0];
  assert.ok(ended?.channel === "alertmanager");
  assert.equal(ended.alerts[0]!.endsAt, new Date(now).toISOString());
  const repeat = deliveriesOf({ ...ALERT, incident: INCIDENT, repeat: true }, am, now);
  assert.deepEqual(repeat.map((d) => d.channel), ["alertmanager"], "people are not told again");
  assert.deepEqual(deliveriesOf(ALERT, am, now).map((d) => d.channel), ["mail", "webhook"]);
});

Deno.test("Alertmanager: POSTed to <base>/api/v2/alerts; unset since queued: dropped", async () => {
  const posts: string[] = [];
  let status = 200;
  const deliver = channels(
    {
      mailer: fakeMailer(),
      webhookPost: (url) => Promise.resolve(void posts.push(url.href)).then(() => status),
    },
    { mail: SMTP, webhook: null, alertmanager: new URL("https://am.example.com/prefix/") },
  );
  const [d] = deliveriesOf(
    { ...ALERT, incident: INCIDENT },
    { ...SETTINGS, to: [], webhook: null, alertmanager: new URL("http://x") },
    0,
  );
  await deliver(d!, NEVER);
  assert.deepEqual(posts, ["https://am.example.com/prefix/api/v2/alerts"]);
  status = 400;
  await assert.rejects(() => deliver(d!, NEVER), /Alertmanager answered HTTP 400/);
  const gone = channels({ mailer: fakeMailer(), webhookPost: () => Promise.resolve(200) }, {
    mail: SMTP,
    webhook: null,
    alertmanager: null,
  });
  await assert.rejects(() => gone(d!, NEVER), /no alertmanager is configured any more/);
  assert.equal(
    typeof parseQueued(JSON.stringify({
      delivery: d,
      queuedAt: 1,
      attempts: 1,
      lastError: "x",
    })),
    "object",
    "a queued Alertmanager alert reads back",
  );
});

Deno.test("channels: mail through the route, webhooks by POST; a non-2xx answer is a failure", async () => {
  const mailer = fakeMailer();
  const posts: string[] = [];
  let status = 204;
  const deliver = channels(
    {
      mailer,
      webhookPost: (url, json) => {
        posts.push(`${url.href} ${json}`);
        return Promise.resolve(status);
      },
    },
    { mail: SMTP, webhook: SETTINGS.webhook, alertmanager: null },
  );
  for (const d of deliveriesOf(ALERT, SETTINGS, 0)) await deliver(d, NEVER);
  assert.equal(mailer.sent.length, 1);
  assert.equal(posts.length, 1);
  assert.match(posts[0]!, /^https:\/\/hooks\.example\.com\/T1\/B2 \{"text":/);
  status = 500;
  await assert.rejects(
    () => deliver(deliveriesOf(ALERT, { ...SETTINGS, to: [] }, 0)[0]!, NEVER),
    /the webhook answered HTTP 500/,
  );
});

Deno.test("a failed delivery is logged and queued; the others go on", async () => {
  const logs = captureLogs();
  const outbox = memoryOutbox();
  const delivered: Delivery[] = [];
  const queue = new AlertQueue(
    (d) =>
      d.channel === "mail"
        ? Promise.reject(new Error("connect ECONNREFUSED"))
        : Promise.resolve(void delivered.push(d)),
    outbox,
    SETTINGS,
    () => 1000,
  );
  queue.send(ALERT);
  await queue.flush();
  assert.equal(delivered.length, 1, "the webhook went out");
  const queued = [...outbox.items.values()];
  assert.deepEqual(queued.map((q) => [q.delivery.channel, q.queuedAt, q.attempts, q.lastError]), [
    ["mail", 1000, 1, "connect ECONNREFUSED"],
  ]);
  assert.match(
    logs.lines().join("\n"),
    /Mail to ops@example\.com through localhost:25 \(TLS auto\) failed, queued for the next run: connect ECONNREFUSED/,
  );
});

function queued(at: number, subject = "s"): QueuedDelivery {
  const mail: Mail = { from: "a@b.c", to: ["ops@example.com"], subject, text: "t" };
  return { delivery: { channel: "mail", mail }, queuedAt: at, attempts: 1, lastError: "down" };
}

Deno.test("retry: delivered ones leave the queue, failing ones count an attempt, old ones are dropped", async () => {
  const logs = captureLogs();
  const outbox = memoryOutbox();
  const now = 10 * OUTBOX_MAX_AGE_MS;
  await outbox.put(queued(now - 60_000, "ok"));
  await outbox.put(queued(now - 60_000, "fails"));
  await outbox.put(queued(now - OUTBOX_MAX_AGE_MS - 1, "too old"));
  const tried: string[] = [];
  await retryOutbox(outbox, (d) => {
    const subject = d.channel === "mail" ? d.mail.subject : "";
    tried.push(subject);
    return subject === "fails" ? Promise.reject(new Error("still down")) : Promise.resolve();
  }, now);
  assert.deepEqual(tried, ["ok", "fails"], "the old one is not even tried");
  const left = [...outbox.items.values()];
  assert.equal(left.length, 1);
  assert.equal(left[0]?.attempts, 2);
  assert.equal(left[0]?.lastError, "still down");
  assert.match(
    logs.lines().join("\n"),
    /Dropping mail "too old" to ops@example\.com, queued since/,
  );
});

Deno.test("retry: the queue is bounded; the oldest beyond the limit are dropped", async () => {
  captureLogs();
  const outbox = memoryOutbox();
  for (let i = 0; i < OUTBOX_MAX_ITEMS + 3; i++) await outbox.put(queued(1000 + i));
  let tried = 0;
  await retryOutbox(outbox, () => {
    tried++;
    return Promise.reject(new Error("down"));
  }, 2000);
  assert.equal(tried, OUTBOX_MAX_ITEMS);
  assert.equal(outbox.items.size, OUTBOX_MAX_ITEMS);
});

Deno.test("retry: a full queue drops an incident's middle alerts first, keeping its first and its last", async () => {
  captureLogs();
  const outbox = memoryOutbox();
  const tag = (id: string) => ` [web #${id}]`;
  // the incident's first alert is the oldest of all: it must survive
  await outbox.put(queued(1000, `web1 PHP restart failed${tag("20261203-100000-000")}`));
  for (let i = 1; i < OUTBOX_MAX_ITEMS; i++) {
    await outbox.put(queued(1000 + i, `web1 PHP still failing${tag("20261203-100000-000")}`));
  }
  await outbox.put(queued(5000, "web1 PHP pool warning"));
  await outbox.put(queued(6000, `web1 PHP recovered${tag("20261203-100000-000")}`));
  const tried: string[] = [];
  await retryOutbox(outbox, (d) => {
    tried.push(d.channel === "mail" ? d.mail.subject : "");
    return Promise.reject(new Error("down"));
  }, 7000);
  assert.equal(outbox.items.size, OUTBOX_MAX_ITEMS);
  assert.match(tried[0]!, /^web1 PHP restart failed/, "the first alert is kept");
  assert.ok(tried.includes("web1 PHP pool warning"), "an alert of no incident outlives repeats");
  assert.match(tried.at(-1)!, /^web1 PHP recovered/, "and its last");
  assert.equal(tried.filter((s) => /still failing/.test(s)).length, OUTBOX_MAX_ITEMS - 3);
});

Deno.test("drop order: per channel and incident, middles, then no incident, then the rest, oldest first", () => {
  const webhook = (id: string, incident?: string): { id: string; item: QueuedDelivery } => ({
    id,
    item: {
      delivery: {
        channel: "webhook",
        body: {
          text: "",
          host: "web1",
          subject: "",
          line: "",
          details: [],
          ...(incident ? { "incident_id": incident } : {}),
        },
      },
      queuedAt: 0,
      attempts: 1,
      lastError: "",
    },
  });
  assert.deepEqual(
    dropOrder([
      webhook("a1", "A"),
      webhook("n1"),
      webhook("a2", "A"),
      webhook("b1", "B"),
      webhook("a3", "A"),
      webhook("a4", "A"),
      webhook("b2", "B"),
    ]),
    ["a2", "a3", "n1", "a1", "b1", "a4", "b2"],
  );
});

Deno.test("chat text: a request URI or script name can neither ping, link, format nor close its code block", () => {
  const uri = "/<!channel> <https://evil.example|Click here> [Click](https://evil.example) @all " +
    "**bold** ```end``` &amp;";
  const hostile = { ...ALERT, details: [`  worker 200 Running for 30.0 s: GET ${uri}`] };
  const [, hook] = deliveriesOf(hostile, SETTINGS, 0);
  assert.ok(hook?.channel === "webhook");
  const text = hook.body.text;
  // one code block, opened after the subject and closed at the very end
  assert.equal(text.split("```").length, 3, text);
  assert.ok(text.startsWith("*web1 PHP restart*\n```\n") && text.endsWith("\n```"), text);
  assert.ok(!/<!channel>|<https:/.test(text), text);
  assert.ok(
    text.includes(
      "GET /&lt;!channel&gt; &lt;https://evil.example|Click here&gt; " +
        "[Click](https://evil.example) @all **bold** '''end''' &amp;amp;\n```",
    ),
    text,
  );
  // the fields stay exact, for receivers that are not chats
  assert.deepEqual(hook.body.details, hostile.details);
  assert.equal(slackText("a < b & c > d"), "a &lt; b &amp; c &gt; d");
});

Deno.test("the file outbox keeps deliveries as 0600 files across processes, one retrier at a time", async () => {
  captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const outbox = fileOutbox(`${dir}/outbox`);
    // retrying an outbox that was never needed creates nothing
    await retryOutbox(outbox, () => Promise.reject(new Error("nothing to send")), 1);
    assert.equal(await Deno.stat(`${dir}/outbox`).then(() => true, () => false), false);
    await outbox.put(queued(5));
    await outbox.put(queued(6));
    const files = [];
    for await (const e of Deno.readDir(`${dir}/outbox`)) {
      if (e.name.endsWith(".json")) files.push(e);
    }
    assert.equal(files.length, 2);
    assert.equal(((await Deno.stat(`${dir}/outbox/${files[0]!.name}`)).mode ?? 0) & 0o777, 0o600);
    const again = fileOutbox(`${dir}/outbox`);
    assert.deepEqual((await again.list()).map((x) => x.item.queuedAt), [5, 6]);
    // while one process retries, another skips
    let inner = "not run";
    await again.exclusive(async () => {
      await fileOutbox(`${dir}/outbox`).exclusive(() => Promise.resolve(void (inner = "ran")));
    });
    assert.equal(inner, "not run");
    await retryOutbox(again, () => Promise.resolve(), 10);
    assert.deepEqual(await again.list(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SMTP options per TLS mode; the password only in nodemailer's auth, never described", async () => {
  assert.deepEqual(
    [
      await smtpOptions({ ...SMTP, tls: "auto" }),
      await smtpOptions({ ...SMTP, tls: "starttls" }),
      await smtpOptions({ ...SMTP, tls: "tls", port: 465 }),
      await smtpOptions({ ...SMTP, tls: "none" }),
      await smtpOptions({ ...SMTP, host: "127.0.0.1" }),
    ].map((o) => [o.secure, o.requireTLS, o.ignoreTLS]),
    [
      [false, false, false],
      [false, true, false],
      [true, false, false],
      [false, false, true],
      [false, false, true],
    ],
  );
  const auth = { ...SMTP, user: "alice", password: "s3cret" };
  assert.deepEqual((await smtpOptions(auth)).auth, {
    type: "login",
    user: "alice",
    pass: "s3cret",
  });
  assert.equal(describeRoute(auth), "mail.example.com:587 (TLS auto, as alice)");
  assert.equal(
    describeRoute({ transport: "sendmail", path: "/usr/sbin/sendmail" }),
    "sendmail /usr/sbin/sendmail",
  );
});

Deno.test("a webhook's path (its secret, for Slack) is never logged", async () => {
  const logs = captureLogs();
  const outbox = memoryOutbox();
  const queue = new AlertQueue(
    (d) => d.channel === "webhook" ? Promise.reject(new Error("HTTP 500")) : Promise.resolve(),
    outbox,
    SETTINGS,
    () => 1,
  );
  queue.send(ALERT);
  await queue.flush();
  const text = logs.lines().join("\n");
  assert.match(text, /Webhook https:\/\/hooks\.example\.com\/… failed, queued/);
  assert.doesNotMatch(text, /T1\/B2/);
  await retryOutbox(outbox, () => Promise.resolve(), 2);
  assert.doesNotMatch(logs.lines().join("\n"), /T1\/B2/);
});

Deno.test("a queued webhook alert keeps no URL: it goes where the configuration says at retry time", async () => {
  const logs = captureLogs();
  const outbox = memoryOutbox();
  const secret = "https://hooks.example.com/services/T1/B2/SECRET";
  const failing = channels(
    {
      mailer: fakeMailer(),
      webhookPost: (url) =>
        Promise.reject(
          new TypeError("fetch failed", {
            cause: new Error(`error sending request for url (${url.href}): connection refused`),
          }),
        ),
    },
    { mail: SMTP, webhook: new URL(secret), alertmanager: null },
  );
  const queue = new AlertQueue(failing, outbox, { ...SETTINGS, to: [] }, () => 1000);
  queue.send(ALERT);
  await queue.flush();
  const stored = JSON.stringify([...outbox.items.values()]);
  assert.ok(!stored.includes("SECRET"), stored);
  assert.match(
    stored,
    /"lastError":"fetch failed: error sending request for url \(https:\/\/hooks\.example\.com\/…\)/,
  );
  assert.ok(!logs.lines().join("\n").includes("SECRET"));

  const posted: string[] = [];
  const moved = channels(
    {
      mailer: fakeMailer(),
      webhookPost: (url) => {
        posted.push(url.href);
        return Promise.resolve(204);
      },
    },
    { mail: SMTP, webhook: new URL("https://hooks.example.com/new/URL"), alertmanager: null },
  );
  await retryOutbox(outbox, moved, 2000);
  assert.deepEqual(posted, ["https://hooks.example.com/new/URL"]);
  assert.equal(outbox.items.size, 0);

  queue.send(ALERT);
  await queue.flush();
  await retryOutbox(
    outbox,
    channels({ mailer: fakeMailer(), webhookPost: () => Promise.resolve(204) }, {
      mail: SMTP,
      webhook: null,
      alertmanager: null,
    }),
    3000,
  );
  assert.equal(
    outbox.items.size,
    0,
    "no webhook configured any more: dropped, not retried for days",
  );
  assert.match(
    logs.lines().join("\n"),
    /Dropping webhook "web1 PHP restart", queued since .*: no webhook is configured any more/,
  );
});

Deno.test("a queued file is checked whole; a webhook URL an older version queued is forgotten", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const logs = captureLogs();
    const outbox = fileOutbox(dir);
    const body = { text: "t", host: "web1", subject: "s", line: "l", details: [] };
    await Deno.writeTextFile(
      `${dir}/1-1-0.json`,
      JSON.stringify({
        delivery: { channel: "webhook", url: "https://hooks.example.com/SECRET", body },
        queuedAt: 1,
        attempts: 1,
        lastError: "x",
      }),
    );
    await Deno.writeTextFile(
      `${dir}/2-1-0.json`,
      JSON.stringify({ delivery: { channel: "mail" } }),
    );
    await Deno.writeTextFile(`${dir}/3-1-0.json`, "\x1b[2J not json");
    const listed = await outbox.list();
    assert.equal(listed.length, 1);
    assert.deepEqual(listed[0]?.item.delivery, { channel: "webhook", body });
    await outbox.update(listed[0]!.id, listed[0]!.item);
    assert.ok(!(await Deno.readTextFile(`${dir}/1-1-0.json`)).includes("SECRET"));
    const dropped = logs.lines().filter((l) => /Dropping unreadable/.test(l));
    assert.deepEqual(dropped, [
      "Dropping unreadable queued alert 2-1-0: delivery.mail: missing",
      "Dropping unreadable queued alert 3-1-0: not JSON (a syntax error)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
