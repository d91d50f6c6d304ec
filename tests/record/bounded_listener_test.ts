/**
 * The listener under /metrics and the HAProxy agent, against what any local user can do: a flood
 * of connections reset before they are accepted (each fails one accept in Deno), and an
 * address someone else holds when it starts.
 */
import assert from "node:assert/strict";
import { listenBounded, type ListenerRules } from "../../src/record/bounded_listener.ts";
import { asUser } from "../support/hostile.ts";

function rules(served: { n: number }): ListenerRules {
  return {
    what: "The test listener",
    maxConnections: 4,
    // as in production: a pause per reset connection would keep clients out for minutes
    acceptPauseMs: 1000,
    makeRoom: (open) => open.values().next().value ?? null,
    async serve(conn) {
      served.n++;
      await conn.write(new TextEncoder().encode("hi\n")).catch(() => 0);
    },
  };
}

/** The first line a client reads, or "" when none comes within 2 s. */
async function ask(port: number): Promise<string> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const timer = setTimeout(() => conn.close(), 2000);
    try {
      const buffer = new Uint8Array(16);
      const n = await conn.read(buffer).catch(() => null);
      return n === null ? "" : new TextDecoder().decode(buffer.subarray(0, n));
    } finally {
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* closed by the timer */ }
    }
  } catch {
    return "";
  }
}

const RESET_FLOOD = `
import socket, struct, sys, time
end = time.time() + 3
while time.time() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        pass
    s.close()
`;

Deno.test("bounded listener: a flood of connections reset before their accept keeps nobody out for long", async () => {
  const stop = new AbortController();
  const served = { n: 0 };
  const l = listenBounded({ hostname: "127.0.0.1", port: 0 }, rules(served), stop.signal);
  try {
    assert.equal(await ask(l.port), "hi\n");
    const port = l.port;
    assert.equal(await asUser(["python3", "-c", RESET_FLOOD, String(port)]), 0);
    // answering again within a few seconds, on the same port
    let answer = "";
    for (let i = 0; i < 4 && answer === ""; i++) {
      answer = await ask(l.port);
      if (answer === "") await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(answer, "hi\n", "answers after the flood");
    assert.equal(l.port, port);
  } finally {
    stop.abort();
    await l.finished;
  }
});

Deno.test("bounded listener: an address another user holds is tried again until it is free, with keepTrying", async () => {
  // nobody holds a port first
  const squatter = new Deno.Command("/usr/sbin/runuser", {
    args: [
      "-u",
      "nobody",
      "--",
      "python3",
      "-c",
      "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(3)",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = squatter.stdout.getReader();
  const { value } = await reader.read();
  const port = Number(new TextDecoder().decode(value).trim());
  assert.ok(port > 0);
  assert.throws(() =>
    listenBounded({ hostname: "127.0.0.1", port }, rules({ n: 0 }), AbortSignal.abort())
  );
  const stop = new AbortController();
  const l = listenBounded({ hostname: "127.0.0.1", port }, rules({ n: 0 }), stop.signal, {
    keepTrying: true,
    retryMs: 200,
  });
  try {
    reader.releaseLock();
    // held: no answer of ours
    assert.equal(await ask(port), "");
    assert.equal((await squatter.status).code, 0, "the squatter held it to its end");
    await squatter.stdout.cancel();
    let answer = "";
    for (let i = 0; i < 20 && answer === ""; i++) {
      await new Promise((r) => setTimeout(r, 250));
      answer = await ask(port);
    }
    assert.equal(answer, "hi\n", "bound once the squatter let go");
  } finally {
    stop.abort();
    await l.finished;
  }
});
