/**
 * The unix socket a pool of the target listens on, and whether what listens there is php-fpm.
 * Debian's /run/php is www-data's: www-data can move php-fpm's socket aside and listen at its
 * path itself, so that the heartbeat (and nginx) talk to it. A restart could not help then: php-fpm
 * would not start while another process answers there. So before a failure is acted on, the
 * socket's holders are asked of the kernel (`ss -xlp`): if none of them is this master's, the
 * failure is said as what it is, and nothing is restarted.
 */
import type { MasterView } from "../act/master.ts";
import { choosePool, readFpmConfig } from "../fpm/config.ts";
import { describeHolder, socketHolders } from "../fpm/socket_holder.ts";
import { type ProbeResult, verdictOf } from "../probe/result.ts";
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
 * `result`, or, when it is a php-fpm failure and another process than this master's holds the
 * pool's unix socket, the failure as it is: an impostor, which no restart mends.
 */
export async function withSocketHolder(
  ctx: TargetContext,
  result: ProbeResult,
  view: MasterView,
): Promise<ProbeResult> {
  const { target, cfg, deps } = ctx;
  if (verdictOf(result) !== "php_down" || cfg.tools.ss === null || view.rows === null) {
    return result;
  }
  const fcgi = target.fcgi?.address;
  const path = fcgi?.transport === "unix" ? fcgi.path : await listenSocketOf(ctx, null);
  if (path === null) return result;
  const holders = await socketHolders(cfg.tools.ss, path, deps.runner, deps.fs);
  if (holders === null || holders.length === 0) return result;
  const master = view.live;
  const ours = new Set(
    master === null
      ? []
      : view.rows.filter((p) => p.pid === master || p.pgid === master).map((p) => p.pid),
  );
  if (holders.some((h) => ours.has(h.pid))) return result;
  const who = await describeHolder(deps.runner, cfg.tools.ps, holders[0]!);
  return {
    kind: "impostor",
    detail: `the socket ${path} is held by ${who}, not by php-fpm's master${
      master === null ? "" : ` ${master}`
    }`,
    ms: result.ms,
    ...(result.via ? { via: result.via } : {}),
  };
}
