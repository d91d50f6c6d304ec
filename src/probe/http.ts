/**
 * probe/ owns asking php-fpm (through nginx over HTTP, or straight over FastCGI) and saying what
 * came back, as a {@link ProbeResult}; it may import only shared/. This module: the heartbeat
 * over HTTP.
 */
import type { HttpAnswer, HttpGet } from "../shared/deps.ts";
import { oneLine } from "../shared/redact.ts";
import { expectProblem, type ProbeKind, type ProbeResult } from "./result.ts";

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
export function forgetProxyEnvironment(): void {
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
