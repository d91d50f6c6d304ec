/**
 * The words of the policy's alerts: what each alert action (heartbeat unreachable or
 * misconfigured, pool overloaded, restarting given up, still failing, recovered, upstream
 * incident over) says in its log line and its alert, with a hint of where to look.
 */
import type { Policy } from "../config/policy_settings.ts";
import { poolLine } from "../fpm/status_page.ts";
import { labelOf, type ProbeResult } from "../probe/result.ts";
import { publicUrl } from "../shared/redact.ts";
import { seconds } from "../shared/time_units.ts";
import type { TargetContext } from "./context.ts";
import { type Action, counted, type Incident } from "./recovery_policy.ts";

/** An alert of the policy in words: its log line's level and message, its subject and details. */
export interface PolicyAlert {
  level: "info" | "warn" | "error";
  message: string;
  subject: string;
  details: string[];
  /** The alert ends its incident; otherwise it belongs to the open one. */
  resolves: boolean;
}

/**
 * What an alert action of the policy says; `lines`: the probe's and the restart history's
 * lines, as the teller words them.
 */
export function policyAlert(
  action: Extract<Action, { type: "alert" }>,
  result: ProbeResult,
  policy: Policy,
  ctx: Pick<TargetContext, "target" | "memory" | "lastStatus">,
  lines: { probe: string[]; history: string[] },
): PolicyAlert {
  const { memory, target } = ctx;
  const label = labelOf(result);
  const url = publicUrl(target.url);
  const incident: Incident = action.incident;
  switch (action.reason) {
    case "unreachable":
      return {
        level: "error",
        message: `${label} PHP not restarted: heartbeat ${url} unreachable (${
          result.kind === "dns" ? "host name does not resolve" : "connection refused"
        }); nginx or the address is down, and restarting php-fpm cannot help.${fpmSide(result)}`,
        subject: "PHP heartbeat unreachable",
        details: lines.probe,
        resolves: false,
      };
    case "misconfigured":
      return {
        level: "error",
        message: `${label} PHP not restarted: heartbeat ${url} ${misconfigurationHint(result)}${
          fpmSide(result)
        }`,
        subject: "PHP heartbeat misconfigured",
        details: lines.probe,
        resolves: false,
      };
    case "overloaded": {
      const s = ctx.lastStatus?.status;
      return {
        level: "warn",
        message: `${label} PHP overloaded, not restarted: ${
          result.pool?.why ?? "the pool still takes requests"
        }; a restart would drop the requests in flight.`,
        subject: "PHP pool overloaded",
        details: [
          ...lines.probe,
          ...(s !== undefined && typeof s !== "string" ? [`Pool: ${poolLine(s)}`] : []),
          'Set on_overload = "restart" to restart an overloaded pool anyway.',
        ],
        resolves: false,
      };
    }
    case "gave_up":
      return {
        level: "error",
        message: `${label} PHP not restarted: ${
          counted(memory.state.restarts).length
        } restarts in ${
          seconds(policy.restartWindowMs)
        } did not keep it up; giving up until it is healthy for ${
          seconds(policy.rearmAfterMs)
        }, SIGHUP or php-relaunch reset; ${
          memory.state.retryAt === null
            ? "no retries (retry_after = [])"
            : `next single attempt at ${new Date(memory.state.retryAt).toISOString()}`
        }.`,
        subject: "PHP restart given up",
        details: [
          ...lines.probe,
          `Failing since ${new Date(incident.since).toISOString()}`,
          ...lines.history,
        ],
        resolves: false,
      };
    case "reminder":
      return {
        level: "warn",
        message: `${label} PHP still failing since ${
          new Date(incident.since).toISOString()
        } (${incident.kind}).`,
        subject: "PHP still failing",
        details: [...lines.probe, ...lines.history],
        resolves: false,
      };
    case "recovered":
      return {
        level: "info",
        message: `${label} PHP recovered after ${
          seconds(action.downtimeMs ?? 0)
        } (${incident.label} since ${new Date(incident.since).toISOString()}).`,
        subject: "PHP recovered",
        details: [
          ...lines.probe,
          `Restarts during the incident: ${incident.restarts}`,
          ...(incident.peer === undefined ? [] : [
            `Workers were blocked on ${incident.peer}; kill rounds: ${incident.kills ?? 0}`,
          ]),
        ],
        resolves: true,
      };
    case "upstream_over":
      return {
        level: "warn",
        message:
          `${label} PHP upstream incident over: the workers no longer wait on ${incident.peer}, yet php-fpm still fails; it is handled as a failure again.`,
        subject: "PHP upstream over",
        details: [
          ...lines.probe,
          `Blocked since ${new Date(incident.since).toISOString()}; kill rounds: ${
            incident.kills ?? 0
          }`,
        ],
        resolves: true,
      };
  }
}

/** What php-fpm's own status page said while nginx failed, as the end of a log line. */
function fpmSide(result: ProbeResult): string {
  if (result.fpm === undefined) return "";
  return result.fpm.answers
    ? ` php-fpm itself answers its status page (${result.fpm.detail}): the fault is nginx's.`
    : ` php-fpm does not answer its status page either (${result.fpm.detail}).`;
}

/** Says what a non-heartbeat answer probably means, for the operator to fix. */
export function misconfigurationHint(result: ProbeResult): string {
  if (result.kind === "impostor") {
    return `failed, and ${result.detail}: not restarted (a restart cannot mend what another user did at php-fpm's socket path, and would cut every pool of the service). Remove it (end that process), then restart php-fpm; keep php-fpm's sockets in a folder only root may write.`;
  }
  if (result.kind === "closed") {
    return "closed the connection without answering: nginx's return 444? Allow this address in heartbeat_allowed.conf.";
  }
  if (result.kind === "unexpected" && result.via === "fcgi") {
    return `${result.detail}: check ping.path and ping.response in the pool, or set expect.`;
  }
  if (result.kind === "unexpected") {
    return `${result.detail}: the page answered, but not with the heartbeat (a PHP error page?); check the page and its logs, or set expect.`;
  }
  if (result.kind === "error" && result.via === "fcgi") {
    return `failed: ${result.detail}. Is this php-fpm's FastCGI socket (listen or pm.status_listen)?`;
  }
  if (result.kind === "error") {
    return `failed: ${result.detail}. Check the URI's scheme and port.`;
  }
  const status = result.status ?? 0;
  if (status >= 300 && status < 400) {
    return `answered ${status} (${result.detail}): the heartbeat must answer itself, not redirect.`;
  }
  if (status === 404) return "answered 404: check the vhost's root and the heartbeat page's path.";
  if (status === 401 || status === 403) {
    return `answered ${status}: the heartbeat location must not require access rights.`;
  }
  return `answered ${status}, which is not a heartbeat's 2xx nor php-fpm's 5xx: check the vhost.`;
}
