/**
 * FastCGI 1.0 records, encoded and decoded without I/O: the request a responder needs
 * (BEGIN_REQUEST, PARAMS, STDIN) and the answer it sends (STDOUT, STDERR, END_REQUEST). A peer's
 * bytes are untrusted: every malformed, foreign or oversized record is a {@link FcgiProtocolError}.
 */

/** Record types of the specification, section 8. */
export const RecordType = {
  BeginRequest: 1,
  AbortRequest: 2,
  EndRequest: 3,
  Params: 4,
  Stdin: 5,
  Stdout: 6,
  Stderr: 7,
  Data: 8,
  GetValues: 9,
  GetValuesResult: 10,
  UnknownType: 11,
} as const;

/** END_REQUEST's protocolStatus values. */
export const ProtocolStatus = [
  "request complete",
  "cannot multiplex",
  "overloaded",
  "unknown role",
];

const VERSION = 1;
const HEADER_LEN = 8;
const MAX_CONTENT = 0xffff;
const ROLE_RESPONDER = 1;

/** A peer broke the protocol (or sent more than we accept); never a crash, always this. */
export class FcgiProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FcgiProtocolError";
  }
}

/** One decoded record. */
export interface FcgiRecord {
  type: number;
  requestId: number;
  content: Uint8Array;
}

/** One record with its header and padding to a multiple of 8 bytes. */
export function encodeRecord(type: number, requestId: number, content: Uint8Array): Uint8Array {
  if (content.length > MAX_CONTENT) throw new RangeError("FastCGI record content over 65535 bytes");
  const padding = (8 - (content.length % 8)) % 8;
  const out = new Uint8Array(HEADER_LEN + content.length + padding);
  out.set([
    VERSION,
    type,
    requestId >> 8,
    requestId & 0xff,
    content.length >> 8,
    content.length & 0xff,
    padding,
    0,
  ]);
  out.set(content, HEADER_LEN);
  return out;
}

function encodeLength(n: number): number[] {
  return n < 128
    ? [n]
    : [((n >>> 24) & 0x7f) | 0x80, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

/** Name-value pairs as PARAMS content (section 3.4). */
export function encodeParams(params: Readonly<Record<string, string>>): Uint8Array {
  const encoder = new TextEncoder();
  const parts: number[] = [];
  for (const [name, value] of Object.entries(params)) {
    const n = encoder.encode(name);
    const v = encoder.encode(value);
    parts.push(...encodeLength(n.length), ...encodeLength(v.length), ...n, ...v);
  }
  return Uint8Array.from(parts);
}

/** Name-value pairs decoded from PARAMS or GET_VALUES_RESULT content. */
export function decodeParams(content: Uint8Array): Map<string, string> {
  const decoder = new TextDecoder();
  const out = new Map<string, string>();
  let at = 0;
  const length = (): number => {
    const first = content[at];
    if (first === undefined) throw new FcgiProtocolError("name-value pair cut short");
    if (first < 128) {
      at += 1;
      return first;
    }
    if (at + 4 > content.length) throw new FcgiProtocolError("name-value length cut short");
    const n = ((first & 0x7f) << 24) | (content[at + 1]! << 16) | (content[at + 2]! << 8) |
      content[at + 3]!;
    at += 4;
    return n;
  };
  while (at < content.length) {
    const nameLen = length();
    const valueLen = length();
    if (at + nameLen + valueLen > content.length) {
      throw new FcgiProtocolError("name-value pair longer than its record");
    }
    const name = decoder.decode(content.subarray(at, at + nameLen));
    at += nameLen;
    out.set(name, decoder.decode(content.subarray(at, at + valueLen)));
    at += valueLen;
  }
  return out;
}

/** The bytes of one responder request: BEGIN_REQUEST, PARAMS (split, then empty), empty STDIN. */
export function encodeRequest(
  requestId: number,
  params: Readonly<Record<string, string>>,
): Uint8Array {
  const begin = new Uint8Array([0, ROLE_RESPONDER, 0, 0, 0, 0, 0, 0]);
  const body = encodeParams(params);
  const records = [encodeRecord(RecordType.BeginRequest, requestId, begin)];
  for (let at = 0; at < body.length; at += MAX_CONTENT) {
    records.push(encodeRecord(RecordType.Params, requestId, body.subarray(at, at + MAX_CONTENT)));
  }
  records.push(encodeRecord(RecordType.Params, requestId, new Uint8Array()));
  records.push(encodeRecord(RecordType.Stdin, requestId, new Uint8Array()));
  return concat(records);
}

/** What a responder answered to one request. */
export interface FcgiAnswer {
  stdout: Uint8Array;
  stderr: string;
  appStatus: number;
  /** END_REQUEST's protocolStatus: 0 complete, 2 overloaded... */
  protocolStatus: number;
}

/**
 * Collects the answer to request `requestId` from bytes as they arrive. `push` returns the answer
 * once END_REQUEST has come, null while more is needed, and throws {@link FcgiProtocolError} for
 * anything a conforming responder would not send, or for more than `maxBytes` of output.
 */
export class AnswerReader {
  #buffer = new Uint8Array(0);
  #stdout: Uint8Array[] = [];
  #stderr: Uint8Array[] = [];
  #size = 0;

  constructor(readonly requestId: number, readonly maxBytes: number) {}

  push(chunk: Uint8Array): FcgiAnswer | null {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    this.#buffer = joined;
    while (this.#buffer.length >= HEADER_LEN) {
      const b = this.#buffer;
      const [version, type, id1, id0, len1, len0, padding] = b as unknown as number[];
      if (version !== VERSION) throw new FcgiProtocolError(`record version ${version}, not 1`);
      const length = (len1! << 8) | len0!;
      const total = HEADER_LEN + length + padding!;
      if (b.length < total) return null;
      const record: FcgiRecord = {
        type: type!,
        requestId: (id1! << 8) | id0!,
        content: b.slice(HEADER_LEN, HEADER_LEN + length),
      };
      this.#buffer = b.slice(total);
      const answer = this.#take(record);
      if (answer !== null) {
        if (this.#buffer.length > 0) {
          throw new FcgiProtocolError("bytes after END_REQUEST");
        }
        return answer;
      }
    }
    return null;
  }

  #take(record: FcgiRecord): FcgiAnswer | null {
    if (record.type === RecordType.UnknownType) {
      throw new FcgiProtocolError("the responder did not understand a record we sent");
    }
    if (record.requestId !== this.requestId) {
      throw new FcgiProtocolError(
        `record for request ${record.requestId}, expected ${this.requestId}`,
      );
    }
    switch (record.type) {
      case RecordType.Stdout:
      case RecordType.Stderr: {
        this.#size += record.content.length;
        if (this.#size > this.maxBytes) {
          throw new FcgiProtocolError(`answer longer than ${this.maxBytes} bytes`);
        }
        (record.type === RecordType.Stdout ? this.#stdout : this.#stderr).push(record.content);
        return null;
      }
      case RecordType.EndRequest: {
        const c = record.content;
        if (c.length !== 8) throw new FcgiProtocolError(`END_REQUEST of ${c.length} bytes, not 8`);
        return {
          stdout: concat(this.#stdout),
          stderr: new TextDecoder().decode(concat(this.#stderr)),
          appStatus: ((c[0]! << 24) | (c[1]! << 16) | (c[2]! << 8) | c[3]!) >>> 0,
          protocolStatus: c[4]!,
        };
      }
      default:
        throw new FcgiProtocolError(`unexpected record type ${record.type} from the responder`);
    }
  }
}

/** The bytes of `parts`, one after another. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A CGI response (RFC 3875 section 6): the status and headers before the blank line, the body. */
export interface CgiResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/**
 * Splits a responder's STDOUT into status, headers and body. Without a Status header the status
 * is 200, as php-fpm and nginx have it.
 */
export function parseCgiResponse(stdout: Uint8Array): CgiResponse {
  const text = new TextDecoder().decode(stdout);
  const match = /\r?\n\r?\n/.exec(text);
  if (match === null) throw new FcgiProtocolError("answer without the blank line after headers");
  const headers = new Map<string, string>();
  for (const line of text.slice(0, match.index).split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new FcgiProtocolError(`malformed header line "${line.slice(0, 60)}"`);
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let status = 200;
  const statusLine = headers.get("status");
  if (statusLine !== undefined) {
    const code = /^(\d{3})(\s|$)/.exec(statusLine);
    if (code === null) throw new FcgiProtocolError(`malformed Status "${statusLine.slice(0, 60)}"`);
    status = Number(code[1]);
  } else if (headers.has("location")) status = 302;
  return { status, headers, body: text.slice(match.index + match[0].length) };
}
