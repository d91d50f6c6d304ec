/** The heartbeat probe through nginx, and what each possible answer means. */
import type { HttpAnswer, HttpGet } from "./deps.ts";
import { escapeControl, oneLine } from "./redact.ts";

/** How a probe ended, as observed on the wire. */
export type ProbeKind =
  /** An HTTP status line arrived (see `status`). */
  | "status"
  /** No complete answer within the timeout (headers or body). */
  | "timeout"
  /** TCP connection refused. */
  | "refused"
  /** The host name did not resolve. */
  | "dns"
  /** The server closed the connection without answering (nginx `return 444`). */
  | "closed"
  /** The answer was cut short: a body shorter than announced, a reset mid-body. */
  | "cut"
  /** A unix socket whose listen queue is full (FastCGI probe): php-fpm is saturated. */
  | "overloaded"
  /** A 2xx whose body is not the expected one (FastCGI ping without "pong"). */
  | "unexpected"
  /** Anything else (TLS failure, protocol error, ...). */
  | "error";

/** One probe's outcome. Failure is the normal domain here, so it is a value, never thrown. */
export interface ProbeResult {
  kind: ProbeKind;
  /** The HTTP status, when `kind` is "status". */
  status?: number;
  /** A short human-readable detail (the error's cause, the redirect target, ...). */
  detail: string;
  /** How long the probe took. */
  ms: number;
  /** Set when the probe went straight to php-fpm over FastCGI; absent for HTTP through nginx. */
  via?: "fcgi";
  /**
   * Set after a timeout when php-fpm's status page was read: `busy` (still taking requests:
   * overloaded) or `hung` (nothing moves), with the numbers that show it.
   */
  pool?: { verdict: "busy" | "hung"; why: string };
  /**
   * Set when nginx failed and php-fpm's status page was asked too: whether php-fpm itself
   * answers, which tells "nginx down" from "both down".
   */
  fpm?: { answers: boolean; detail: string };
}

/** What a probe result calls for. */
export type Verdict =
  /** 2xx: nothing to do. */
  | "healthy"
  /** 500/502/503/504 or a timeout: php-fpm has failed; restarting it helps. */
  | "php_down"
  /** Refused or unresolvable: nginx or the address is down; restarting php-fpm cannot help. */
  | "unreachable"
  /** An answer that is not a heartbeat's: a setup problem; restarting php-fpm cannot help. */
  | "misconfigured";

const PHP_FAILURE_STATUSES = new Set([500, 502, 503, 504]);

/** Maps a probe result to what it calls for. */
export function verdictOf(result: ProbeResult): Verdict {
  switch (result.kind) {
    case "status": {
      const status = result.status ?? 0;
      if (status >= 200 && status < 300) return "healthy";
      if (PHP_FAILURE_STATUSES.has(status)) return "php_down";
      return "misconfigured";
    }
    case "timeout":
    case "overloaded":
    // nginx sends what php-fpm sends: a body that stops is a worker that died mid-answer
    case "cut":
      return "php_down";
    case "refused":
      // straight to php-fpm, a refused connection means php-fpm itself is gone
      return result.via === "fcgi" ? "php_down" : "unreachable";
    case "dns":
      return "unreachable";
    case "closed":
      // nginx closing is its `return 444`; php-fpm closing is a worker that died mid-request
      return result.via === "fcgi" ? "php_down" : "misconfigured";
    case "unexpected":
    case "error":
      return "misconfigured";
  }
}

/** The short label used in log lines: the HTTP status, or the failure kind. */
export function labelOf(result: ProbeResult): string {
  return result.kind === "status" ? String(result.status) : result.kind;
}

/** Classifies what `fetch` threw (platform-facts.md §b: the detail is only in `cause`). */
export function classifyError(err: unknown): { kind: ProbeKind; detail: string } {
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return { kind: "timeout", detail: "no complete answer within the timeout" };
  }
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : "";
  const message = err instanceof Error ? err.message : String(err);
  // fetch names the whole URL, whose query may hold a token
  const detail = oneLine(cause || message);
  if (/error reading a body|error decoding response body|unexpected end of file/i.test(detail)) {
    return { kind: "cut", detail: `the answer was cut short: ${detail}` };
  }
  if (/Connection refused/i.test(detail)) return { kind: "refused", detail };
  if (/dns error|failed to lookup address/i.test(detail)) return { kind: "dns", detail };
  if (/connection closed before message completed|connection reset|reset by peer/i.test(detail)) {
    return { kind: "closed", detail };
  }
  return { kind: "error", detail };
}

/** The body as a short single line for logs: tags dropped, white space folded. */
function bodyLine(body: string): string {
  return oneLine(body.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 160));
}

/**
 * Probes `url` once with a deadline of `timeoutMs` covering connect, headers and body; `stop`
 * abandons the probe (its result is then meaningless).
 */
export async function probeHttp(
  url: URL,
  timeoutMs: number,
  expect: string,
  httpGet: HttpGet,
  now: () => number,
  stop?: AbortSignal,
): Promise<ProbeResult> {
  const started = now();
  const deadline = AbortSignal.timeout(timeoutMs);
  let answer: HttpAnswer;
  try {
    answer = await httpGet(url, stop ? AbortSignal.any([deadline, stop]) : deadline);
  } catch (err) {
    return { ...classifyError(err), ms: now() - started };
  }
  const ms = now() - started;
  const unexpected = expectProblem(answer.status, answer.body, expect);
  if (unexpected !== null) {
    return { kind: "unexpected", status: answer.status, detail: unexpected, ms };
  }
  const detail = answer.location !== null
    ? `redirect to ${oneLine(answer.location)}`
    : bodyLine(answer.body);
  return { kind: "status", status: answer.status, detail, ms };
}

/**
 * Why a 2xx answer's body is not the heartbeat's, or null: it must start with `expect` (when
 * set), so that a 200 carrying a PHP error page is not taken for health.
 */
export function expectProblem(status: number, body: string, expect: string): string | null {
  const text = body.trim();
  if (status < 200 || status > 299 || expect === "" || text.startsWith(expect)) return null;
  return `answered "${escapeControl(text.slice(0, 40))}", expected "${escapeControl(expect)}"`;
}

/** The heartbeat prints two short values; anything longer than this is not our page. */
const MAX_BODY_BYTES = 16 * 1024;

const PROXY_VARIABLES = [
  "HTTP_PROXY",
  "http_proxy",
  "HTTPS_PROXY",
  "https_proxy",
  "ALL_PROXY",
  "all_proxy",
];

/**
 * Forgets proxies from the environment, which `fetch` honours even for 127.0.0.1 (root's shell
 * often has one): a local heartbeat must reach the local server. The HTTP client reads these when
 * it is created, so this must run before the first client is made.
 */
function forgetProxyEnvironment(): void {
  for (const name of PROXY_VARIABLES) Deno.env.delete(name);
}

/**
 * The body, up to {@link MAX_BODY_BYTES}, read into one buffer of that size: the default reader
 * would allocate 64 KiB a probe, garbage that a watchdog probing every second must not make.
 */
async function readBody(response: Response): Promise<string> {
  if (response.body === null) return "";
  const reader = response.body.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(MAX_BODY_BYTES);
  let size = 0;
  try {
    while (size < MAX_BODY_BYTES) {
      const { value, done } = await reader.read(new Uint8Array(buffer, size));
      // each read hands the buffer over and back: keep the one it returns
      if (value !== undefined) {
        buffer = value.buffer as ArrayBuffer;
        size += value.byteLength;
      }
      if (done) break;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return new TextDecoder().decode(new Uint8Array(buffer, 0, size));
}

/**
 * The real {@link HttpGet}: a fresh connection per probe (a kept-alive one could hide nginx
 * going away), no proxy, redirects reported rather than followed, the URL's host kept as vhost.
 */
export const directHttpGet: HttpGet = async (url, signal) => {
  forgetProxyEnvironment();
  using client = Deno.createHttpClient({});
  const response = await fetch(url, { client, signal, redirect: "manual" });
  const body = await readBody(response);
  return { status: response.status, location: response.headers.get("location"), body };
};
