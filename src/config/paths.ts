/**
 * Step 5 of loading: the paths a run writes, checked before anything is created. Against the
 * permissions the binary embeds, and against what another local user could have planted: a link
 * anywhere in a path, a lock or state folder that is not root's alone.
 */
import { dirname } from "node:path";
import type { Deps } from "../shared/deps.ts";
import { linkProblem, privateProblem } from "../shared/safe_file.ts";
import { incidentsPath, outboxPath } from "./settings.ts";

/** Where the shipped permissions let php-relaunch write, for error messages. */
export const WRITABLE = "/var/lib/php-relaunch, /var/db/php-relaunch, /var/log, /run, /var/run, " +
  "/var/lock, /var/lib/prometheus";

/**
 * The paths the compiled binary's permissions do not let it use, each a sentence: said before
 * anything runs rather than as a crash at the first write.
 */
export function permissionProblems(
  deps: Deps,
  paths: [what: string, access: "read" | "write", path: string | null | undefined][],
): string[] {
  return paths.flatMap(([what, access, path]) =>
    path && !deps.host.allows(access, path)
      ? [
        `Cannot use ${what} "${path}": php-relaunch's permissions do not let it ${access} there (${
          access === "write" ? WRITABLE : "see README, Permissions"
        }); choose a path there, or run from source with wider permissions`,
      ]
      : []
  );
}

/**
 * Why the paths a run writes cannot be used, each a sentence: a symbolic link anywhere in one, a
 * log, lock or state folder (or lock file) that another user made or can write, a state file that
 * is not a file, a state folder that is not a folder. Checked before anything is created.
 */
export async function pathProblems(
  deps: Deps,
  uid: number | null,
  paths: {
    logFile: string | null;
    stateDir: string | null;
    stateFiles: readonly string[];
    lockFiles: readonly string[];
    metricsFile: string | null;
  },
): Promise<string[]> {
  const lstat = deps.fs.info;
  // past the links: a path the permissions hide is refused by the permission check instead
  const seen = (path: string) => lstat(path).catch(() => null);
  const problems: string[] = [];
  const refuse = (what: string, path: string, why: string) =>
    problems.push(`Refusing ${what} "${path}": ${why}`);
  const checkLinks = async (what: string, path: string | null) => {
    const problem = path === null ? null : await linkProblem(lstat, path);
    if (problem !== null) refuse(what, path!, problem);
    return problem === null;
  };
  const checkPrivate = async (what: string, path: string, kind: "folder" | "file") => {
    const info = await seen(path);
    const problem = info === null ? null : privateProblem(info, uid, kind);
    if (problem !== null) refuse(what, path, problem);
    return problem === null;
  };
  const checkKind = async (what: string, path: string, kind: "folder" | "file") => {
    const info = await seen(path);
    if (info !== null && (kind === "folder" ? !info.isDirectory : !info.isFile)) {
      refuse(what, path, `it is not a ${kind === "folder" ? "folder" : "regular file"}`);
    }
  };
  // the log's folder as the state's: another user who can write in it could swap the log for a
  // pipe (a run that never ends) or a link (root creating a file wherever it points)
  if (
    paths.logFile !== null && await checkLinks("log file", paths.logFile) &&
    await checkPrivate("log folder", dirname(paths.logFile), "folder")
  ) {
    await checkKind("log file", paths.logFile, "file");
  }
  await checkLinks("metrics file", paths.metricsFile);
  const dir = paths.stateDir;
  if (
    dir !== null && await checkLinks("state folder", dir) &&
    await checkPrivate("state folder", dir, "folder")
  ) {
    const inside: [string, string, "folder" | "file"][] = [
      ["incident log", incidentsPath(dir), "file"],
      ["outbox", outboxPath(dir), "folder"],
      ...paths.stateFiles.map((f): [string, string, "file"] => ["state file", f, "file"]),
    ];
    for (const [what, path, kind] of inside) {
      if (await checkLinks(what, path)) await checkKind(what, path, kind);
    }
  }
  for (const lock of new Set(paths.lockFiles)) {
    if (!(await checkLinks("lock file", lock))) continue;
    await checkPrivate("lock folder", dirname(lock), "folder");
    await checkPrivate("lock file", lock, "file");
  }
  return [...new Set(problems)];
}
