/** Loopback FastCGI responders for tests: well-behaved, hung, closing, or sending garbage. */
import { concat, decodeParams, encodeRecord, RecordType } from "../../src/probe/fcgi_protocol.ts";

const encoder = new TextEncoder();

/** A responder's answer to request `id`: STDOUT, an empty STDOUT, END_REQUEST. */
export function answerBytes(id: number, stdout: string, protocolStatus = 0): Uint8Array {
  return concat([
    encodeRecord(RecordType.Stdout, id, encoder.encode(stdout)),
    encodeRecord(RecordType.Stdout, id, new Uint8Array()),
    encodeRecord(RecordType.EndRequest, id, new Uint8Array([0, 0, 0, 0, protocolStatus, 0, 0, 0])),
  ]);
}

/** What the fake does with one connection, given the params it received. */
export type Behaviour =
  | { answer: string }
  | { raw: Uint8Array }
  | { hang: true }
  | { close: true };

/** Reads one request's records until the empty STDIN; returns its params. */
async function readRequest(conn: Deno.Conn): Promise<Map<string, string> | null> {
  let buffer: Uint8Array = new Uint8Array(0);
  const params: Uint8Array[] = [];
  const chunk = new Uint8Array(65_536);
  while (true) {
    while (buffer.length >= 8) {
      const length = (buffer[4]! << 8) | buffer[5]!;
      const total = 8 + length + buffer[6]!;
      if (buffer.length < total) break;
      const type = buffer[1];
      const content = buffer.slice(8, 8 + length);
      buffer = buffer.slice(total);
      if (type === RecordType.Params) params.push(content);
      if (type === RecordType.Stdin && length === 0) return decodeParams(concat(params));
    }
    const n = await conn.read(chunk).catch(() => null);
    if (n === null) return null;
    buffer = concat([buffer, chunk.subarray(0, n)]);
  }
}

/** A FastCGI listener answering each request as `behave` says; `close()` ends it and its connections. */
export class FakeResponder {
  readonly requests: Map<string, string>[] = [];
  readonly #conns = new Set<Deno.Conn>();
  readonly #done: Promise<void>;

  constructor(
    readonly listener: Deno.Listener,
    behave: (params: Map<string, string>) => Behaviour,
  ) {
    this.#done = (async () => {
      const tasks: Promise<void>[] = [];
      for await (const conn of listener) {
        this.#conns.add(conn);
        tasks.push(this.#serve(conn, behave));
      }
      await Promise.all(tasks);
    })();
  }

  /** A responder on 127.0.0.1 with a free port. */
  static tcp(behave: (params: Map<string, string>) => Behaviour): FakeResponder {
    return new FakeResponder(Deno.listen({ hostname: "127.0.0.1", port: 0 }), behave);
  }

  /** A responder on a unix socket at `path`. */
  static unix(path: string, behave: (params: Map<string, string>) => Behaviour): FakeResponder {
    return new FakeResponder(Deno.listen({ transport: "unix", path }), behave);
  }

  get port(): number {
    return (this.listener.addr as Deno.NetAddr).port;
  }

  async #serve(conn: Deno.Conn, behave: (params: Map<string, string>) => Behaviour) {
    try {
      const params = await readRequest(conn);
      if (params === null) return;
      this.requests.push(params);
      const b = behave(params);
      if ("hang" in b) {
        // hold the connection until close() ends it
        await conn.read(new Uint8Array(1)).catch(() => null);
        return;
      }
      let bytes = "answer" in b ? answerBytes(1, b.answer) : "raw" in b ? b.raw : new Uint8Array();
      while (bytes.length > 0) bytes = bytes.subarray(await conn.write(bytes));
    } catch {
      /* the client went away */
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed by close() */ }
    }
  }

  async close(): Promise<void> {
    this.listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    await this.#done;
  }
}
