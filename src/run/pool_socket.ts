/**
 * The unix socket a pool of the target listens on, and whether what is at its path is php-fpm's.
 * Debian's /run/php is www-data's: www-data can move php-fpm's socket aside and listen at its
 * path itself, so that the heartbeat (and nginx) talk to it, or put a folder there, where php-fpm
 * cannot bind again. A restart would then take down every pool of the service and mend nothing
 * (or hide it until it is done again). So before a failure is acted on, what is at the path is
 * looked at, and its listeners asked of the kernel (`ss -xlpe`, by the file's inode): when it is
 * not this master's socket, the failure is said as what it is, and nothing is restarted.
 */
import type { MasterView } from "../act/master.ts";
import { choosePool, readFpmConfig } from "../fpm/config.ts";
import { describeHolder, socketHolders } from "../fpm/socket_holder.ts";
import { type ProbeResult, verdictOf } from "../probe/result.ts";
import { escapeControl } from "../shared/redact.ts";
import type { TargetContext } from "./context.ts";

/**
 * The unix socket the pool named `pool` listens on (null: the target's only pool), from
 * php-fpm's configuration, read once; null when it listens on TCP or cannot be told.
 */
export async function listenSocketOf(
  ctx: TargetContext,
  pool: string | null,
): Promise<string | null> {
  const key = pool ?? "";
  const known = ctx.listenSockets.get(key);
  if (known !== undefined) return known;
  const config = ctx.target.fpmConfig === null
    ? null
    : await readFpmConfig(ctx.deps.fs, ctx.target.fpmConfig);
  const listen = config === null ? null : choosePool(config, pool, null)?.listen ?? null;
  const path = listen !== null && listen.startsWith("/") ? listen : null;
  ctx.listenSockets.set(key, path);
  return path;
}

/**
 * `result`, or, when it is a php-fpm failure that the process table has not made certain, and
 * the pool's socket path is not php-fpm's (something else than a socket is there, or another
 * process than this master's listens there), the failure as it is: tampering, which a restart
 * cannot mend (php-fpm cannot bind where a folder is) or would only hide, at the cost of every
 * pool of the service.
 */
export async function withSocketHolder(
  ctx: TargetContext,
  result: ProbeResult,
  view: MasterView,
): Promise<ProbeResult> {
  const { target, cfg, deps } = ctx;
  // a master gone or stopped is the process table's word: the kill rung ends its group,
  // whoever of it holds the socket
  if (verdictOf(result) !== "php_down" || result.certain !== undefined) return result;
  const fcgi = target.fcgi?.address;
  const path = fcgi?.transport === "unix" ? fcgi.path : await listenSocketOf(ctx, null);
  if (path === null) return result;
  const found = await deps.fs.info(path).catch(() => null);
  if (found !== null && found.isSocket === false) {
    const what = found.isDirectory ? "a folder" : found.isSymlink ? "a symbolic link" : "a file";
    return impostor(result, `${path} is ${what} of uid ${found.uid ?? "?"}, not a socket`);
  }
  if (cfg.tools.ss === null || view.rows === null) return result;
  const holders = await socketHolders(cfg.tools.ss, path, deps);
  if (holders === "unnamed") {
    return impostor(
      result,
      `the socket ${path} is answered by a process that bound it by another name (not php-fpm's master${
        view.live === null ? "" : ` ${view.live}`
      })`,
    );
  }
  if (holders === null || holders.length === 0) return result;
  // php-fpm's own: the live master's group, or the group the last master led (its workers
  // outlive it a moment after a crash)
  const masters = [view.live, ctx.memory.state.masterPid].filter((pid) => pid !== null);
  const ours = new Set(
    view.rows.filter((p) => masters.some((m) => p.pid === m || p.pgid === m)).map((p) => p.pid),
  );
  if (holders.some((h) => ours.has(h.pid))) return result;
  const who = await describeHolder(deps.runner, cfg.tools.ps, holders[0]!);
  const master = view.live;
  return impostor(
    result,
    `the socket ${path} is held by ${who}, not by php-fpm's master${
      master === null ? "" : ` ${master}`
    }`,
  );
}

function impostor(result: ProbeResult, detail: string): ProbeResult {
  return {
    kind: "impostor",
    detail: escapeControl(detail),
    ms: result.ms,
    ...(result.via ? { via: result.via } : {}),
  };
}
