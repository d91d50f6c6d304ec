/**
 * etcd's v3 API through its JSON gateway (`POST /v3/kv/range` and the like, keys and values in
 * base64), the few calls the fleet's restart cap needs: leases, put, put-if-absent, range by
 * create revision, delete. Each call has a deadline per member, and the members are tried in
 * order, beginning with the one that last answered.
 */
import type { EtcdPost } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { forgetProxyEnvironment } from "../probe/http.ts";

/** The most of an answer read: a range of every failing key of a large fleet fits. */
export const MAX_ETCD_ANSWER = 1024 * 1024;

/** No member answered (each one's reason in the message). */
export class EtcdUnreachable extends Error {
  override name = "EtcdUnreachable";
}

/** etcd answered with an error of its own (a lease that expired: code 5, "lease not found"). */
export class EtcdRefused extends Error {
  override name = "EtcdRefused";
  constructor(message: string, readonly code: number | null) {
    super(message);
  }
}

/** etcd refused to authenticate (a wrong password, an unknown user): no use asking again at once. */
export class EtcdAuthFailed extends EtcdRefused {
  override name = "EtcdAuthFailed";
}

/** One key as a range lists it. */
export interface EtcdKey {
  key: string;
  value: string;
  /** The revision that created it, as etcd counts (a decimal string in the gateway's JSON). */
  createRevision: bigint;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A text as the gateway's base64 bytes. */
export function toBase64(text: string): string {
  let binary = "";
  for (const byte of encoder.encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The gateway's base64 bytes as text. */
export function fromBase64(b64: string): string {
  const binary = atob(b64);
  return decoder.decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

/** The key just past every key that starts with `prefix`: the end of a prefix's range. */
export function prefixEnd(prefix: string): string {
  const bytes = encoder.encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]!++;
      let binary = "";
      for (const byte of end) binary += String.fromCharCode(byte);
      return btoa(binary);
    }
  }
  // every byte 0xff: to the end of the key space
  return btoa("\0");
}

type Json = Record<string, unknown>;

/** etcd's user and password, when etcd has auth enabled. */
export interface EtcdAuth {
  readonly user: string;
  readonly password: string;
}

/**
 * etcd's word that the token is missing, invalid or expired (HTTP 401, gRPC code 16
 * Unauthenticated, "invalid auth token"; or "user name is empty" when none was sent): worth one
 * new token.
 */
export function isTokenRefusal(err: unknown): boolean {
  return err instanceof EtcdRefused &&
    (err.code === 16 || /invalid auth token|user name is empty/.test(err.message));
}

/** A client of a few of etcd's v3 calls. */
export class EtcdClient {
  /** The member that answered last: asked first next time. */
  private preferred = 0;
  /** With auth: the token being got or last got (shared by calls made meanwhile). */
  private token: Promise<string> | null = null;

  constructor(
    private readonly endpoints: readonly URL[],
    private readonly post: EtcdPost,
    private readonly timeoutMs: number,
    private readonly auth: EtcdAuth | null = null,
  ) {}

  /**
   * POSTs `body` to `path`, with etcd's auth token when there is auth: a token etcd says is
   * invalid or expired is renewed once and the call made once more.
   * @throws {EtcdUnreachable} when no member answers; {EtcdRefused} when etcd says no (a wrong
   * password too).
   */
  async call(path: string, body: Json): Promise<Json> {
    if (this.auth === null) return await this.send(path, body);
    const fresh = this.token === null;
    const token = this.tokenPromise();
    const first = await token;
    try {
      return await this.send(path, body, { authorization: first });
    } catch (err) {
      if (fresh || !isTokenRefusal(err)) throw err;
      if (this.token === token) this.token = null;
      return await this.send(path, body, { authorization: await this.tokenPromise() });
    }
  }

  /** The current token, or a new one asked for (forgotten if etcd does not give one). */
  private tokenPromise(): Promise<string> {
    if (this.token !== null) return this.token;
    const auth = this.auth!;
    const token = this.send("/v3/auth/authenticate", { name: auth.user, password: auth.password })
      .catch((err) => {
        throw err instanceof EtcdRefused ? new EtcdAuthFailed(err.message, err.code) : err;
      })
      .then((r) => {
        if (typeof r.token !== "string" || r.token === "") {
          throw new EtcdAuthFailed("etcd gave no auth token (is auth enabled?)", null);
        }
        return r.token;
      });
    this.token = token;
    token.catch(() => {
      if (this.token === token) this.token = null;
    });
    return token;
  }

  /**
   * POSTs `body` to `path` of each member in turn until one answers.
   * @throws {EtcdUnreachable} when none does; {EtcdRefused} when etcd says no.
   */
  private async send(
    path: string,
    body: Json,
    headers?: Readonly<Record<string, string>>,
  ): Promise<Json> {
    const problems: string[] = [];
    const n = this.endpoints.length;
    for (let i = 0; i < n; i++) {
      const at = (this.preferred + i) % n;
      const base = this.endpoints[at]!;
      let answer: { status: number; body: string };
      try {
        answer = await this.post(
          new URL(path, base),
          JSON.stringify(body),
          AbortSignal.timeout(this.timeoutMs),
          headers,
        );
      } catch (err) {
        const timedOut = err instanceof DOMException && err.name === "TimeoutError";
        problems.push(
          `${base.origin}: ${
            timedOut ? `no answer within ${this.timeoutMs} ms` : describeError(err)
          }`,
        );
        continue;
      }
      let json: Json | null = null;
      try {
        const parsed: unknown = JSON.parse(answer.body.split("\n")[0] ?? "");
        if (typeof parsed === "object" && parsed !== null) json = parsed as Json;
      } catch { /* said below */ }
      if (answer.status === 200 && json !== null) {
        this.preferred = at;
        return json;
      }
      // an error of etcd's own (4xx with a gRPC code) is the cluster's word: another member says
      // the same; a 5xx (no leader, shutting down) is this member's
      if (answer.status < 500 && json !== null && typeof json.code === "number") {
        this.preferred = at;
        throw new EtcdRefused(String(json.message ?? json.error ?? "refused"), json.code);
      }
      problems.push(`${base.origin}: HTTP ${answer.status}`);
    }
    throw new EtcdUnreachable(`etcd did not answer: ${problems.join("; ")}`);
  }

  /** A new lease of `ttlMs` (rounded up to whole seconds); its id. */
  async grant(ttlMs: number): Promise<string> {
    const r = await this.call("/v3/lease/grant", { TTL: Math.ceil(ttlMs / 1000) });
    if (typeof r.ID !== "string" && typeof r.ID !== "number") {
      throw new EtcdRefused("etcd granted no lease", null);
    }
    return String(r.ID);
  }

  /** Keeps lease `id` alive once; false when it is gone (expired or revoked). */
  async keepAlive(id: string): Promise<boolean> {
    const r = await this.call("/v3/lease/keepalive", { ID: id });
    const result = r.result as Json | undefined;
    return Number(result?.TTL ?? 0) > 0;
  }

  /** Revokes lease `id`: every key bound to it goes. One already gone is no error. */
  async revoke(id: string): Promise<void> {
    try {
      await this.call("/v3/lease/revoke", { ID: id });
    } catch (err) {
      if (!(err instanceof EtcdRefused)) throw err;
    }
  }

  /** Puts `key` = `value`, bound to lease `lease`. */
  async put(key: string, value: string, lease: string): Promise<void> {
    await this.call("/v3/kv/put", { key: toBase64(key), value: toBase64(value), lease });
  }

  /** Puts `key` only when it does not exist (a transaction on its create revision); true if put. */
  async putIfAbsent(key: string, value: string, lease: string): Promise<boolean> {
    const k = toBase64(key);
    const r = await this.call("/v3/kv/txn", {
      compare: [{ key: k, target: "CREATE", result: "EQUAL", create_revision: "0" }],
      success: [{ request_put: { key: k, value: toBase64(value), lease } }],
    });
    return r.succeeded === true;
  }

  /** Every key that starts with `prefix`, oldest (by create revision) first. */
  async list(prefix: string): Promise<EtcdKey[]> {
    const r = await this.call("/v3/kv/range", {
      key: toBase64(prefix),
      range_end: prefixEnd(prefix),
      sort_order: "ASCEND",
      sort_target: "CREATE",
    });
    const kvs = Array.isArray(r.kvs) ? r.kvs as Json[] : [];
    return kvs.flatMap((kv) => {
      try {
        return [{
          key: fromBase64(String(kv.key)),
          value: typeof kv.value === "string" ? fromBase64(kv.value) : "",
          createRevision: BigInt(String(kv.create_revision ?? "0")),
        }];
      } catch {
        return [];
      }
    });
  }

  /** Deletes `key`. */
  async delete(key: string): Promise<void> {
    await this.call("/v3/kv/deleterange", { key: toBase64(key) });
  }
}

/** An answer's body, at most {@link MAX_ETCD_ANSWER} bytes; a longer one is refused. */
async function boundedText(response: Response): Promise<string> {
  if (response.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += chunk.byteLength;
    if (size > MAX_ETCD_ANSWER) {
      throw new RangeError(`etcd's answer is larger than ${MAX_ETCD_ANSWER} bytes`);
    }
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return decoder.decode(all);
}

/**
 * The real {@link EtcdPost}: no proxy from the environment (etcd is on the operator's network,
 * not the web), redirects not followed, the body bounded; `signal` covers the body too.
 */
export const directEtcdPost: EtcdPost = async (url, json, signal, headers) => {
  forgetProxyEnvironment();
  using client = Deno.createHttpClient({});
  const response = await fetch(url, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: json,
    client,
    signal,
    redirect: "manual",
  });
  return { status: response.status, body: await boundedText(response) };
};
