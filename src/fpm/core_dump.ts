/**
 * The top of the newest core dump's stack, where systemd-coredump keeps them: what crashed the
 * child (an extension, OPcache) in a few lines, for the alert. `coredumpctl info` prints systemd's
 * own symbolized trace ("#0  0x00007f... zend_mm_alloc_heap (libphp.so + 0x1234)").
 */
import { toolPaths } from "../act/service.ts";
import type { Fs, ProcessRunner } from "../shared/deps.ts";
import { clip } from "../shared/redact.ts";

/** How long `coredumpctl info` may take: it may read a large core from disk. */
export const COREDUMPCTL_TIMEOUT_MS = 5000;
/** How many frames of the crashed thread are shown. */
const TOP_FRAMES = 5;

/** coredumpctl's path, or null where systemd-coredump is not installed. */
export async function findCoredumpctl(fs: Pick<Fs, "isExecutable">): Promise<string | null> {
  for (const path of toolPaths("coredumpctl")) {
    if (await fs.isExecutable(path)) return path;
  }
  return null;
}

/** The first thread's top frames in `coredumpctl info`'s text ("#0 kill (libc.so.6 + 0x3c4d)"). */
export function topFrames(text: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => /^\s*Stack trace of thread \d+:/.test(l));
  if (start < 0) return [];
  const frames: string[] = [];
  for (const line of lines.slice(start + 1)) {
    const m = /^\s*#(\d+)\s+0x[0-9a-f]+\s+(.*)$/.exec(line);
    if (m === null) break;
    frames.push(clip(`#${m[1]} ${m[2]!.trim()}`, 160));
    if (frames.length === TOP_FRAMES) break;
  }
  return frames;
}

/**
 * The newest core of processes named `processName` since `sinceMs`: its executable's signal line
 * and top frames; empty when there is none, or coredumpctl fails (never throws).
 */
export async function newestCoreFrames(
  runner: ProcessRunner,
  coredumpctl: string,
  processName: string,
  sinceMs: number,
): Promise<string[]> {
  try {
    const r = await runner.run(
      coredumpctl,
      [
        "info",
        "--no-pager",
        "-1",
        `--since=@${Math.floor(sinceMs / 1000)}`,
        processName,
      ],
      { timeoutMs: COREDUMPCTL_TIMEOUT_MS },
    );
    if (r.code !== 0 || r.timedOut) return [];
    return topFrames(r.stdout);
  } catch {
    return [];
  }
}
