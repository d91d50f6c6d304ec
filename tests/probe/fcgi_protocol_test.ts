import assert from "node:assert/strict";
import {
  AnswerReader,
  decodeParams,
  encodeParams,
  encodeRecord,
  encodeRequest,
  FcgiProtocolError,
  parseCgiResponse,
  RecordType,
} from "../../src/probe/fcgi_protocol.ts";

import { answerBytes } from "../support/fcgi_server.ts";

const text = (s: string) => new TextEncoder().encode(s);

/** A small deterministic PRNG (mulberry32), so a failing fuzz case can be replayed by seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("a record has the version, type, request id, length and padding to 8 bytes", () => {
  const r = encodeRecord(RecordType.Params, 258, text("abc"));
  assert.deepEqual([...r.subarray(0, 8)], [1, 4, 1, 2, 0, 3, 5, 0]);
  assert.equal(r.length, 16);
  assert.equal(encodeRecord(RecordType.Stdin, 1, new Uint8Array()).length, 8);
});

Deno.test("name-value pairs use 1-byte lengths below 128 and 4-byte lengths above", () => {
  const long = "x".repeat(300);
  const bytes = encodeParams({ A: "1", LONG: long });
  assert.deepEqual([...bytes.subarray(0, 4)], [1, 1, 65, 49]);
  assert.deepEqual([...bytes.subarray(4, 9)], [4, 0x80, 0, 1, 44]);
  assert.deepEqual(decodeParams(bytes), new Map([["A", "1"], ["LONG", long]]));
});

Deno.test("a request is BEGIN_REQUEST (responder), PARAMS, an empty PARAMS and an empty STDIN", () => {
  const bytes = encodeRequest(1, { SCRIPT_NAME: "/ping" });
  const types: number[] = [];
  for (let at = 0; at < bytes.length;) {
    types.push(bytes[at + 1]!);
    at += 8 + ((bytes[at + 4]! << 8) | bytes[at + 5]!) + bytes[at + 6]!;
  }
  assert.deepEqual(types, [1, 4, 4, 5]);
  assert.deepEqual([...bytes.subarray(8, 10)], [0, 1], "role RESPONDER");
  assert.equal(bytes[10], 0, "no KEEP_CONN: php-fpm closes after answering");
});

Deno.test("params longer than one record are split over several PARAMS records", () => {
  const bytes = encodeRequest(1, { BIG: "y".repeat(70_000) });
  let params = 0;
  for (let at = 0; at < bytes.length;) {
    if (bytes[at + 1] === RecordType.Params) params++;
    at += 8 + ((bytes[at + 4]! << 8) | bytes[at + 5]!) + bytes[at + 6]!;
  }
  assert.equal(params, 3);
});

Deno.test("the answer is collected across chunk boundaries, one byte at a time", () => {
  const bytes = answerBytes(1, "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npong");
  const reader = new AnswerReader(1, 1024);
  let answer = null;
  for (let i = 0; i < bytes.length; i++) {
    answer = reader.push(bytes.subarray(i, i + 1));
    if (i < bytes.length - 1) assert.equal(answer, null);
  }
  assert.ok(answer);
  const cgi = parseCgiResponse(answer.stdout);
  assert.equal(cgi.status, 200);
  assert.equal(cgi.body, "pong");
  assert.equal(cgi.headers.get("content-type"), "text/plain");
});

Deno.test("STDERR is kept apart from STDOUT", () => {
  const reader = new AnswerReader(1, 1024);
  assert.equal(reader.push(encodeRecord(RecordType.Stderr, 1, text("PHP Warning: x"))), null);
  const answer = reader.push(answerBytes(1, "\r\n\r\nok"));
  assert.equal(answer?.stderr, "PHP Warning: x");
});

Deno.test("a CGI response without Status is 200, with Location 302, with Status its code", () => {
  assert.equal(parseCgiResponse(text("Content-Type: text/html\n\nhi")).status, 200);
  assert.equal(parseCgiResponse(text("Location: /x\r\n\r\n")).status, 302);
  assert.equal(parseCgiResponse(text("Status: 404 Not Found\r\n\r\nFile not found.")).status, 404);
});

const malformed: [string, Uint8Array, RegExp][] = [
  ["wrong version", Uint8Array.from([2, 6, 0, 1, 0, 0, 0, 0]), /version 2/],
  ["another request id", answerBytes(7, "\r\n\r\n"), /request 7, expected 1/],
  ["a type a responder never sends", encodeRecord(RecordType.Params, 1, text("x")), /type 4/],
  [
    "UNKNOWN_TYPE",
    encodeRecord(RecordType.UnknownType, 1, new Uint8Array(8)),
    /did not understand/,
  ],
  [
    "END_REQUEST of the wrong size",
    encodeRecord(RecordType.EndRequest, 1, new Uint8Array(3)),
    /3 bytes/,
  ],
  [
    "bytes after END_REQUEST",
    Uint8Array.from([...answerBytes(1, "\r\n\r\n"), 1, 6, 0, 1, 0, 0, 0, 0]),
    /after END_REQUEST/,
  ],
];
for (const [name, bytes, message] of malformed) {
  Deno.test(`a malformed answer is a protocol error: ${name}`, () => {
    assert.throws(() => new AnswerReader(1, 1024).push(bytes), (err: unknown) => {
      assert.ok(err instanceof FcgiProtocolError);
      assert.match(err.message, message);
      return true;
    });
  });
}

Deno.test("an answer over the size limit is a protocol error, not a growing buffer", () => {
  const reader = new AnswerReader(1, 100_000);
  const chunk = encodeRecord(RecordType.Stdout, 1, new Uint8Array(60_000));
  assert.equal(reader.push(chunk), null);
  assert.throws(() => reader.push(chunk), /longer than 100000 bytes/);
});

Deno.test("malformed CGI headers are protocol errors", () => {
  assert.throws(() => parseCgiResponse(text("no blank line")), FcgiProtocolError);
  assert.throws(() => parseCgiResponse(text("garbage\r\n\r\n")), FcgiProtocolError);
  assert.throws(() => parseCgiResponse(text("Status: abc\r\n\r\n")), FcgiProtocolError);
});

Deno.test("name-value pairs that overrun their record are protocol errors", () => {
  assert.throws(() => decodeParams(Uint8Array.from([5, 1, 65])), FcgiProtocolError);
  assert.throws(() => decodeParams(Uint8Array.from([0x80, 0])), FcgiProtocolError);
});

Deno.test("fuzz: random and mutated answers give an answer, need more, or a protocol error", () => {
  const valid = answerBytes(1, "Status: 200 OK\r\nX-Powered-By: PHP\r\n\r\npong");
  const outcomes = { answer: 0, more: 0, error: 0 };
  for (let seed = 1; seed <= 3000; seed++) {
    const random = prng(seed);
    let bytes: Uint8Array;
    if (seed % 3 === 0) {
      bytes = Uint8Array.from({ length: Math.floor(random() * 200) }, () => random() * 256);
    } else {
      bytes = valid.slice(0, seed % 5 === 0 ? Math.floor(random() * valid.length) : valid.length);
      for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips--) {
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      }
    }
    const reader = new AnswerReader(1, 4096);
    try {
      let answer = null;
      // random chunking, so that boundaries fall everywhere
      for (let at = 0; at < bytes.length && answer === null;) {
        const size = 1 + Math.floor(random() * 40);
        answer = reader.push(bytes.subarray(at, at + size));
        at += size;
      }
      if (answer === null) outcomes.more++;
      else {
        outcomes.answer++;
        try {
          parseCgiResponse(answer.stdout);
        } catch (err) {
          assert.ok(err instanceof FcgiProtocolError, `seed ${seed}: ${err}`);
        }
      }
    } catch (err) {
      assert.ok(err instanceof FcgiProtocolError, `seed ${seed}: ${err}`);
      outcomes.error++;
    }
  }
  // the mutations must reach all three outcomes, or the fuzzing proves little
  assert.ok(
    outcomes.answer > 0 && outcomes.more > 0 && outcomes.error > 0,
    JSON.stringify(outcomes),
  );
});
