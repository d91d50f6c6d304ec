/**
 * What a probe found, and what each possible answer means for php-fpm: the vocabulary shared by
 * the HTTP and FastCGI probes and the policy. Pure.
 */
import { escapeControl } from "../shared/redact.ts";

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
  | "error"
  /**
   * php-fpm's unix socket is held by another process than php-fpm's master (set after a failure
   * by the socket's holders): whatever answers there is not php-fpm, and no restart mends that.
   */
  | "impostor";

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
  /**
   * Set when the process table makes a php-fpm failure certain: its master gone (`crash`) or
   * every process of the pool stopped (`hang`). No confirmation can change it.
   */
  certain?: { kind: "crash" | "hang"; why: string };
  /**
   * Set after a php-fpm failure when most of the pool's stuck workers wait on one peer (a TCP
   * address, a unix socket, a mount): `blocked` of `of` workers, the longest for `forMs`.
   * Restarting php-fpm cannot help: its workers would block on it again at once.
   */
  upstream?: UpstreamWait;
}

/** What most of a pool's stuck workers wait on (see fpm/upstream.ts). */
export interface UpstreamWait {
  /** "127.0.0.1:3306", "/run/mysqld/mysqld.sock", "NFS (rpc_wait_bit_killable)". */
  peer: string;
  blocked: number;
  of: number;
  forMs: number;
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
    case "impostor":
      return "misconfigured";
  }
}

/** The short label used in log lines: the HTTP status, or the failure kind. */
export function labelOf(result: ProbeResult): string {
  return result.kind === "status" ? String(result.status) : result.kind;
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
