/** What the attack tests play: another local user's commands, and a mail server that trickles. */

/** Runs `args` as the unprivileged `user` (nobody by default); its exit code. */
export async function asUser(args: string[], user = "nobody"): Promise<number> {
  const r = await new Deno.Command("/usr/sbin/runuser", {
    args: ["-u", user, "--", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  return r.code;
}

/**
 * A mail server on loopback that greets, then answers EHLO with one "250-" line every `everyMs`,
 * for at most a minute: never silent long enough for an inactivity timeout to fire. It counts
 * the connections it was given and those the client ended.
 */
export function tricklingSmtp(everyMs: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const enc = new TextEncoder();
  const conns = new Set<Deno.Conn>();
  let given = 0;
  let ended = 0;
  const serve = async (conn: Deno.Conn) => {
    given++;
    conns.add(conn);
    try {
      await conn.write(enc.encode("220 slow ESMTP\r\n"));
      if ((await conn.read(new Uint8Array(1024))) === null) return;
      for (let i = 0; i < 60_000 / everyMs; i++) {
        await conn.write(enc.encode(`250-still thinking ${i}\r\n`));
        await new Promise((r) => setTimeout(r, everyMs));
      }
    } catch {
      ended++;
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const served: Promise<void>[] = [];
  const done = (async () => {
    try {
      for await (const conn of listener) served.push(serve(conn));
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    /** Connections made to it. */
    connections: () => given,
    /** Connections the client ended while it was still talking. */
    closed: () => ended,
    async close() {
      listener.close();
      for (const c of conns) c.close();
      await done;
      await Promise.all(served);
    },
  };
}
