/** The real {@link ProcessRunner}: `Deno.Command` with a deadline that takes the whole process group down. */
import type { ProcessRunner, RunResult } from "../shared/deps.ts";

/** Where init scripts and our helpers are found, whatever PATH cron gave us. */
export const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** How long a TERM'd process group gets before KILL. */
const KILL_GRACE_MS = 2000;
/** Output beyond this is dropped, unless the caller asks for more: we mostly quote it in logs. */
const MAX_OUTPUT_BYTES = 64 * 1024;
/**
 * A daemon started by an init script can inherit our pipes and keep them open for its whole
 * life; once the command itself has exited we only wait this long for the rest of its output.
 */
const DRAIN_AFTER_EXIT_MS = 300;

/**
 * Reads a stream whole but keeps a bounded part of it: its first `maxBytes`, or with `tailBytes`
 * its last that many bytes, from the first whole line among them. `truncated`: more was said.
 */
async function readCapped(
  stream: ReadableStream<Uint8Array>,
  exited: Promise<unknown>,
  tailBytes?: number,
  maxBytes = MAX_OUTPUT_BYTES,
): Promise<{ text: string; truncated: boolean }> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let size = 0;
  const tail: Uint8Array[] = [];
  let tailSize = 0;
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = exited.then(() =>
    new Promise<"late">((resolve) => {
      if (!finished) timer = setTimeout(() => resolve("late"), DRAIN_AFTER_EXIT_MS);
    })
  );
  try {
    while (true) {
      const next = await Promise.race([reader.read(), late]);
      if (next === "late") {
        await reader.cancel();
        break;
      }
      if (next.done) break;
      if (tailBytes !== undefined) {
        tail.push(next.value);
        tailSize += next.value.length;
        // drop whole chunks from the front while the rest still holds the tail
        while (tail.length > 1 && tailSize - tail[0]!.length >= tailBytes) {
          tailSize -= tail.shift()!.length;
        }
      } else if (size < maxBytes) {
        text += decoder.decode(next.value.subarray(0, maxBytes - size), { stream: true });
      }
      size += next.value.length;
    }
  } finally {
    finished = true;
    clearTimeout(timer);
    reader.releaseLock();
  }
  if (tailBytes === undefined) {
    return { text: (text + decoder.decode()).trim(), truncated: size > maxBytes };
  }
  const bytes = new Uint8Array(tailSize);
  let at = 0;
  for (const chunk of tail) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  const cut = bytes.length > tailBytes;
  const kept = decoder.decode(bytes.subarray(Math.max(0, bytes.length - tailBytes)));
  // a tail cut mid-line starts at the next line
  return { text: (cut ? kept.slice(kept.indexOf("\n") + 1) : kept).trim(), truncated: cut };
}

/**
 * Writes `bytes` to a child's standard input and closes it. A child that stops reading holds
 * the write until its deadline kills it; one that exits first breaks the pipe: both are the
 * exit status's to tell, not an error of their own.
 */
async function feed(stream: WritableStream<Uint8Array>, bytes: Uint8Array): Promise<void> {
  const writer = stream.getWriter();
  try {
    await writer.write(bytes);
    await writer.close();
  } catch {
    // the exit status says what happened
  }
}

function killGroup(pid: number, signal: Deno.Signal): void {
  try {
    // detached children lead their own process group, so -pid reaches the grandchildren too
    Deno.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Runs commands detached in their own process group; on timeout TERM, then KILL, the whole group. */
export const realRunner: ProcessRunner = {
  async run(cmd, args, { timeoutMs, tailBytes, maxBytes, stdin, signal }): Promise<RunResult> {
    const child = new Deno.Command(cmd, {
      args: [...args],
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true,
      env: { PATH: SYSTEM_PATH, LC_ALL: "C" },
    }).spawn();
    let timedOut = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const end = () => {
      if (killTimer !== undefined) return;
      killGroup(child.pid, "SIGTERM");
      killTimer = setTimeout(() => killGroup(child.pid, "SIGKILL"), KILL_GRACE_MS);
    };
    const termTimer = setTimeout(() => {
      timedOut = true;
      end();
    }, timeoutMs);
    signal?.addEventListener("abort", end, { once: true });
    const status = child.status;
    try {
      const [stdout, stderr, result] = await Promise.all([
        readCapped(child.stdout, status, tailBytes, maxBytes),
        readCapped(child.stderr, status),
        status,
        stdin === undefined ? null : feed(child.stdin, stdin),
      ]);
      return {
        code: result.code,
        signal: result.signal,
        stdout: stdout.text,
        stderr: stderr.text,
        timedOut,
        truncated: stdout.truncated,
      };
    } finally {
      clearTimeout(termTimer);
      clearTimeout(killTimer);
      signal?.removeEventListener("abort", end);
    }
  },
};
