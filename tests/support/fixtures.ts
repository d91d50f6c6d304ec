/** Records the tests write as files: an incident line, a target's state after giving up. */
import type { IncidentRecord } from "../../src/record/incidents.ts";

/** An incident at `at`: a hung pool whose stuck workers were killed, with bare evidence. */
export function incidentRecord(at: number, label = "timeout"): IncidentRecord {
  return {
    version: 1,
    at,
    host: "web1",
    target: "www",
    label,
    pool: "hung",
    why: "all 5 workers busy",
    evidence: {
      at,
      status: null,
      statusError: "not read",
      processes: [],
      configFile: null,
      settings: null,
      errorLogFile: null,
      slowlog: [],
      errorLog: [],
      memory: null,
    },
    restart: { ok: true, rung: "kill_stuck", steps: ["kill_stuck: SIGKILL to stuck workers 12"] },
  };
}

/** A state file's content for a target that gave up at `at` after failed restarts. */
export function givenUpState(at: number, restarts = 1) {
  return {
    version: 1,
    failures: 0,
    timeouts: 0,
    failingSince: null,
    successes: 0,
    healthySince: null,
    incident: {
      id: "20261127-000000-000",
      kind: "php_down",
      since: at - 1,
      label: "502",
      restarts,
      lastAlertAt: at,
    },
    restarts: Array.from({ length: restarts }, (_, i) => ({
      at: at - 1 - i,
      ok: false,
      label: "502",
      detail: "x",
    })),
    givenUpAt: at,
    graceUntil: 0,
  };
}
