/**
 * Probing php-fpm directly over FastCGI, without nginx: `fcgi://HOST:PORT/PATH` over TCP and
 * `fcgi+unix:///SOCKET.sock/PATH` over a unix socket. PATH is what php-fpm sees as SCRIPT_NAME and
 * SCRIPT_FILENAME: its `ping.path` or `pm.status_path`, or the absolute path of a PHP script.
 */
import type { FcgiAddress, FcgiGet, FcgiTarget, UnixListens } from "../shared/deps.ts";
import {
  AnswerReader,
  encodeRequest,
  FcgiProtocolError,
  parseCgiResponse,
  ProtocolStatus,
} from "./fcgi_protocol.ts";
import { expectProblem, type ProbeResult } from "./result.ts";
import { oneLine } from "../shared/redact.ts";

/** The URL schemes of the FastCGI probe. */
export const FCGI_SCHEMES = ["fcgi:", "fcgi+unix:"];

/** Whether `url` is probed over FastCGI. */
export function isFcgiUrl(url: URL): boolean {
  return FCGI_SCHEMES.includes(url.protocol);
}

/**
 * Where a FastCGI URL points, or a sentence saying what is wrong. A unix socket's path ends at the
 * first segment named `*.sock` or `*.socket`, as php-fpm's packages name them.
 */
export function fcgiTargetOf(url: URL): FcgiTarget | string {
  const query = url.search.replace(/^\?/, "");
  const encoded = url.pathname || "/";
  let decoded: string;
  try {
    decoded = decodeURIComponent(encoded);
  } catch {
    return `the path "${encoded}" has a bad %-escape: expected %XX escapes of UTF-8`;
  }
  // deno-lint-ignore no-control-regex -- a control character in a path is what is refused
  if (/[\x00-\x1f\x7f]/.test(decoded)) {
    return `the path "${encoded}" decodes to a control character: expected a file path`;
  }
  if (url.protocol === "fcgi:") {
    if (url.hostname === "" || url.port === "") {
      return `expected fcgi://HOST:PORT/PATH, e.g. fcgi://127.0.0.1:9000/ping`;
    }
    return {
      address: {
        transport: "tcp",
        hostname: url.hostname.replace(/^\[|\]$/g, ""),
        port: +url.port,
      },
      path: decoded,
      query,
    };
  }
  if (url.protocol === "fcgi+unix:") {
    const end = /^(\/(?:[^/]+\/)*?[^/]+\.sock(?:et)?)(\/.*)$/.exec(decoded);
    if (url.host !== "" || end === null) {
      return `expected fcgi+unix:///SOCKET.sock/PATH, e.g. fcgi+unix:///run/php/php8.2-fpm.sock/ping`;
    }
    return { address: { transport: "unix", path: end[1]! }, path: end[2]!, query };
  }
  return `expected the scheme fcgi:// or fcgi+unix://`;
}

/** The place of a FastCGI target, for people. */
export function describeFcgiTarget(target: FcgiTarget): string {
  const a = target.address;
  return a.transport === "unix" ? a.path : `${a.hostname}:${a.port}`;
}

/** The CGI parameters of a GET for `path` (as nginx's fastcgi_params would send them). */
export function requestParams(target: FcgiTarget): Record<string, string> {
  const a = target.address;
  return {
    GATEWAY_INTERFACE: "CGI/1.1",
    SERVER_SOFTWARE: "php-relaunch",
    REQUEST_METHOD: "GET",
    SCRIPT_FILENAME: target.path,
    SCRIPT_NAME: target.path,
    REQUEST_URI: target.query ? `${target.path}?${target.query}` : target.path,
    DOCUMENT_URI: target.path,
    QUERY_STRING: target.query,
    SERVER_PROTOCOL: "HTTP/1.1",
    REMOTE_ADDR: "127.0.0.1",
    REMOTE_PORT: "0",
    SERVER_ADDR: a.transport === "tcp" ? a.hostname : "127.0.0.1",
    SERVER_PORT: a.transport === "tcp" ? String(a.port) : "0",
    SERVER_NAME: "localhost",
    CONTENT_LENGTH: "0",
  };
}

/** The most a probe reads: php-fpm's full status of a big pool is well below this. */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

function timeoutError(): DOMException {
  return new DOMException("no complete answer within the timeout", "TimeoutError");
}

/**
 * Connects with the deadline `signal`: TCP connects take a signal; unix ones do not
 * (platform-facts.md §d), so a timer races them and closes a late connection.
 */
async function connect(a: FcgiAddress, signal: AbortSignal): Promise<Deno.Conn> {
  if (a.transport === "tcp") {
    return await Deno.connect({ transport: "tcp", hostname: a.hostname, port: a.port, signal });
  }
  const pending = Deno.connect({ transport: "unix", path: a.path });
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(timeoutError());
    signal.addEventListener("abort", () => reject(timeoutError()), { once: true });
  });
  try {
    return await Promise.race([pending, aborted]);
  } catch (err) {
    pending.then((conn) => conn.close(), () => {});
    throw err;
  }
}

/** The real {@link UnixListens}: a connection made and closed at once, nothing sent. */
export const unixListens: UnixListens = async (path, timeoutMs) => {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const conn = await connect({ transport: "unix", path }, signal);
    conn.close();
    return true;
  } catch (err) {
    if (err instanceof DOMException && err.name === "TimeoutError") return true;
    if (err instanceof Deno.errors.ConnectionRefused || err instanceof Deno.errors.NotFound) {
      return false;
    }
    return null;
  }
};

/**
 * The real {@link FcgiGet}: one request on a fresh connection, the whole exchange under `signal`.
 * Rejects with `TimeoutError` when the signal fires, `Deno.errors.*` for connection failures and
 * {@link FcgiProtocolError} for a peer that breaks the protocol.
 */
export const directFcgiGet: FcgiGet = async (target, signal) => {
  const conn = await connect(target.address, signal);
  // closing the connection is the only way to interrupt a pending read (platform-facts.md §d)
  const onAbort = () => {
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const requestId = 1;
    let bytes = encodeRequest(requestId, requestParams(target));
    while (bytes.length > 0) bytes = bytes.subarray(await conn.write(bytes));
    const reader = new AnswerReader(requestId, MAX_ANSWER_BYTES);
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) throw new Deno.errors.UnexpectedEof("connection closed before END_REQUEST");
      const answer = reader.push(buffer.subarray(0, n));
      if (answer === null) continue;
      if (answer.protocolStatus !== 0) {
        throw new FcgiProtocolError(
          `php-fpm ended the request: ${ProtocolStatus[answer.protocolStatus] ?? "unknown status"}`,
        );
      }
      const cgi = parseCgiResponse(answer.stdout);
      return { status: cgi.status, body: cgi.body, stderr: answer.stderr };
    }
  } catch (err) {
    if (signal.aborted) throw timeoutError();
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
    onAbort();
  }
};

/** Classifies what a FastCGI request threw. */
export function classifyFcgiError(err: unknown): Pick<ProbeResult, "kind" | "detail"> {
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return { kind: "timeout", detail: "no complete answer within the timeout" };
  }
  if (err instanceof Deno.errors.ConnectionRefused || err instanceof Deno.errors.NotFound) {
    return { kind: "refused", detail: `php-fpm is not listening: ${(err as Error).message}` };
  }
  if (err instanceof Deno.errors.WouldBlock) {
    // a unix socket whose listen backlog is full refuses at once instead of queueing
    return { kind: "overloaded", detail: "php-fpm's listen queue is full" };
  }
  if (err instanceof FcgiProtocolError) return { kind: "error", detail: oneLine(err.message) };
  if (
    err instanceof Deno.errors.UnexpectedEof || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe
  ) {
    return { kind: "closed", detail: (err as Error).message };
  }
  const message = oneLine(err instanceof Error ? err.message : String(err));
  if (/failed to lookup address/i.test(message)) return { kind: "dns", detail: message };
  return { kind: "error", detail: message };
}

/**
 * Probes a FastCGI target once with a deadline of `timeoutMs`; `expect` (when not empty) must
 * start the body, as php-fpm's `ping.response` does ("pong").
 */
export async function probeFcgi(
  target: FcgiTarget,
  timeoutMs: number,
  expect: string,
  fcgiGet: FcgiGet,
  now: () => number,
  stop?: AbortSignal,
): Promise<ProbeResult> {
  const started = now();
  const deadline = AbortSignal.timeout(timeoutMs);
  try {
    const answer = await fcgiGet(target, stop ? AbortSignal.any([deadline, stop]) : deadline);
    const ms = now() - started;
    const unexpected = expectProblem(answer.status, answer.body, expect);
    if (unexpected !== null) {
      return { kind: "unexpected", status: answer.status, detail: unexpected, ms, via: "fcgi" };
    }
    const body = answer.body.trim();
    const detail = oneLine(
      body.replace(/\s+/g, " ").slice(0, 160) || answer.stderr.split("\n")[0]?.slice(0, 160) ||
        "",
    );
    return { kind: "status", status: answer.status, detail, ms, via: "fcgi" };
  } catch (err) {
    return { ...classifyFcgiError(err), ms: now() - started, via: "fcgi" };
  }
}
