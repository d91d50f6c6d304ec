import assert from "node:assert/strict";
import {
  escapeControl,
  oneLine,
  publicUrl,
  redactUrls,
  webhookName,
  withoutUserinfo,
} from "../../src/shared/redact.ts";
import { describeError } from "../../src/shared/errors.ts";
import { withoutPassword } from "../../src/alert/mail.ts";
import { smtpRoute } from "../support/fakes.ts";

const SECRET = "T0SECRET/B0SECRET/XYZsecret";

Deno.test("redactUrls: every URL in a text keeps its scheme and host only", () => {
  assert.equal(
    redactUrls(
      `error sending request from 127.0.0.1:39046 for https://hooks.slack.com/services/${SECRET}?x=1 (127.0.0.1:443): client error`,
    ),
    "error sending request from 127.0.0.1:39046 for https://hooks.slack.com/… (127.0.0.1:443): client error",
  );
  assert.equal(redactUrls("http://user:pw@127.0.0.1:8080/hb.php"), "http://127.0.0.1:8080/…");
  assert.equal(
    redactUrls("see http://[::1]:9000/a?b and ftp://h"),
    "see http://[::1]:9000/… and ftp://h",
  );
  assert.equal(redactUrls("no url here: 127.0.0.1:25"), "no url here: 127.0.0.1:25");
});

Deno.test("publicUrl: a heartbeat keeps its path, never its userinfo, query or fragment", () => {
  assert.equal(
    publicUrl(new URL("http://u:p@127.0.0.1:8889/php-heartbeat.php?token=abc#x")),
    "http://127.0.0.1:8889/php-heartbeat.php?…",
  );
  assert.equal(
    publicUrl(new URL("fcgi+unix:///run/php/php8.2-fpm.sock/ping")),
    "fcgi+unix:///run/php/php8.2-fpm.sock/ping",
  );
  assert.equal(
    webhookName(new URL(`https://u:p@hooks.slack.com/services/${SECRET}`)),
    "https://hooks.slack.com/…",
  );
});

Deno.test("withoutUserinfo: a URL as typed, parseable or not, hides what stands before an @", () => {
  assert.equal(withoutUserinfo("http://user:pw@h/x"), "http://…@h/x");
  assert.equal(withoutUserinfo("http//user:pw@h/x"), "http//…@h/x");
  assert.equal(withoutUserinfo("http://h/x"), "http://h/x");
  assert.equal(withoutUserinfo("x".repeat(300)).length, 201);
});

Deno.test("escapeControl: CR, LF, ESC, NUL and line separators become visible escapes", () => {
  assert.equal(
    escapeControl("a\r\nb\tc\x1b[31md\x00e\u2028f\x7f"),
    "a\\r\\nb\\tc\\x1b[31md\\x00e\\u2028f\\x7f",
  );
  assert.equal(escapeControl("plain é ü"), "plain é ü");
  assert.equal(oneLine(`line\nhttps://h/${SECRET}`), "line\\nhttps://h/…");
});

Deno.test("describeError: the cause chain on one line, URLs cut, control characters escaped", () => {
  const err = new TypeError("fetch failed", {
    cause: new Error(`error sending request for url (https://hooks.example.com/${SECRET}):\nreset`),
  });
  const line = describeError(err);
  assert.equal(
    line,
    "fetch failed: error sending request for url (https://hooks.example.com/…):\\nreset",
  );
  assert.ok(!line.includes(SECRET));
});

Deno.test("withoutPassword: the password leaves a server's echo in every form AUTH sends it", () => {
  const route = smtpRoute("mail.example.com", 587, { user: "alice", password: "pa55-w0rd" });
  const plain = btoa("\0alice\0pa55-w0rd");
  const login = btoa("pa55-w0rd");
  const echoed = `535 5.7.8 no: ${plain} / ${login} / pa55-w0rd`;
  const clean = withoutPassword(echoed, route);
  assert.equal(clean, "535 5.7.8 no: [password] / [password] / [password]");
  assert.equal(withoutPassword("x", smtpRoute("h", 25)), "x");
});

Deno.test("escapeControl: the invisible characters that reorder or hide text are shown as escapes", () => {
  assert.equal(escapeControl("invoice\u202egnp.exe"), "invoice\\u202egnp.exe");
  assert.equal(escapeControl("a\u200bb\ufeffc\u2066d"), "a\\u200bb\\ufeffc\\u2066d");
  assert.equal(escapeControl("café ünïcode"), "café ünïcode", "letters stay as they are");
  // by category, not by a list: tag characters, the Arabic letter mark, a soft hyphen, a Hangul
  // filler, a lone surrogate
  assert.equal(
    escapeControl("a\u{e0041}b\u061cc\u00add\u3164e\ud800f"),
    "a\\u{e0041}b\\u061cc\\xadd\\u3164e\\ud800f",
  );
  assert.equal(escapeControl("日本語 😀 Ελληνικά"), "日本語 😀 Ελληνικά");
});
