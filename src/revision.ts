/**
 * The git revision php-relaunch runs from, for `--version`: run from a checkout, it is read from
 * .git; the compiled binary has no .git and carries dist/revision.txt instead (written by
 * scripts/build.sh, embedded with --include). Either way a read, never a `git` process.
 */

const BUILT = new URL("../dist/revision.txt", import.meta.url);
const GIT = new URL("../.git/", import.meta.url);

async function read(url: URL): Promise<string | null> {
  try {
    return (await Deno.readTextFile(url)).trim();
  } catch {
    return null;
  }
}

/** The short revision ("3f2a9c1"), with "+" when built from a checkout that had changes, or null. */
export async function revision(): Promise<string | null> {
  // a checkout's own HEAD first: a dist/revision.txt beside it may be an older build's
  const head = await read(new URL("HEAD", GIT));
  if (head === null) return await read(BUILT);
  const ref = /^ref: (.+)$/.exec(head)?.[1];
  if (ref === undefined) return head.slice(0, 12);
  const loose = await read(new URL(ref, GIT));
  if (loose) return loose.slice(0, 12);
  const packed = await read(new URL("packed-refs", GIT));
  const line = packed?.split("\n").find((l) => l.endsWith(` ${ref}`));
  return line ? line.slice(0, 12) : null;
}
