/**
 * The git revision php-relaunch was built from, for `--version`: the compiled binary carries
 * dist/revision.txt (written by scripts/build.sh and embedded with --include); run from a
 * checkout, it is read from .git. Either way a read, never a `git` process.
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
  const built = await read(BUILT);
  if (built) return built;
  const head = await read(new URL("HEAD", GIT));
  if (head === null) return null;
  const ref = /^ref: (.+)$/.exec(head)?.[1];
  if (ref === undefined) return head.slice(0, 12);
  const loose = await read(new URL(ref, GIT));
  if (loose) return loose.slice(0, 12);
  const packed = await read(new URL("packed-refs", GIT));
  const line = packed?.split("\n").find((l) => l.endsWith(` ${ref}`));
  return line ? line.slice(0, 12) : null;
}
