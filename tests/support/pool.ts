/** php-fpm status pages for tests: one read off a real pool, and made-to-order ones. */
import type { PoolStatus } from "../../src/fpm/status_page.ts";
import { STARTED_AT } from "./fpm_host.ts";

/** php-fpm 8.2's `?json&full`, as read from a real pool (two workers, one after a ping). */
export const REAL_STATUS =
  `{"pool":"x","process manager":"static","start time":1795644330,"start since":1,"accepted conn":1,"listen queue":0,"max listen queue":0,"listen queue len":0,"idle processes":2,"active processes":0,"total processes":2,"max active processes":1,"max children reached":0,"slow requests":0, "processes":[{"pid":27729,"state":"Idle","start time":1795644330,"start since":1,"requests":1,"request duration":365,"request method":"GET","request uri":"\\/ping","content length":0,"user":"-","script":"-","last request cpu":0.00,"last request memory":2097152},{"pid":27730,"state":"Idle","start time":1795644330,"start since":1,"requests":0,"request duration":0,"request method":"-","request uri":"-","content length":0,"user":"-","script":"-","last request cpu":0.00,"last request memory":0}]}`;

/** A status with `busy` workers running `script` for `seconds`, and `idle` idle ones. */
export function statusOf(
  over: Partial<PoolStatus> & { busy?: number; idleWorkers?: number; seconds?: number },
): PoolStatus {
  const busy = over.busy ?? 2;
  const idleWorkers = over.idleWorkers ?? 0;
  const workers = [
    ...Array.from({ length: busy }, (_, i) => ({
      pid: 200 + i,
      state: "Running",
      requests: 10,
      durationMs: (over.seconds ?? 30) * 1000,
      method: "GET",
      uri: "/slow.php",
      script: "/var/www/slow.php",
      cpu: 0,
      memory: 0,
      startedAt: STARTED_AT,
    })),
    ...Array.from({ length: idleWorkers }, (_, i) => ({
      pid: 300 + i,
      state: "Idle",
      requests: 10,
      durationMs: 5,
      method: "GET",
      uri: "/ok.php",
      script: "/var/www/ok.php",
      cpu: 0,
      memory: 0,
      startedAt: STARTED_AT,
    })),
  ];
  return {
    pool: "www",
    pm: "static",
    acceptedConn: 100,
    listenQueue: 0,
    maxListenQueue: 0,
    listenQueueLen: 511,
    idle: idleWorkers,
    active: busy,
    total: busy + idleWorkers,
    maxChildrenReached: 0,
    slowRequests: 0,
    workers,
    ...over,
  };
}

/** A {@link PoolStatus} as php-fpm writes it with `?json&full`. */
export function statusJson(s: PoolStatus): string {
  return JSON.stringify({
    pool: s.pool,
    "process manager": s.pm,
    "start time": 1795644330,
    "start since": 100,
    "accepted conn": s.acceptedConn,
    "listen queue": s.listenQueue,
    "max listen queue": s.maxListenQueue,
    "listen queue len": s.listenQueueLen,
    "idle processes": s.idle,
    "active processes": s.active,
    "total processes": s.total,
    "max active processes": s.total,
    "max children reached": s.maxChildrenReached,
    "slow requests": s.slowRequests,
    processes: s.workers.map((w) => ({
      pid: w.pid,
      state: w.state,
      "start time": Math.round((w.startedAt ?? STARTED_AT) / 1000),
      "start since": 100,
      requests: w.requests,
      "request duration": w.durationMs * 1000,
      "request method": w.method,
      "request uri": w.uri,
      "content length": 0,
      user: "-",
      script: w.script,
      "last request cpu": w.cpu,
      "last request memory": w.memory,
    })),
  });
}
