/**
 * record/ owns what is kept for later: the incident log, the metrics and the report built from
 * them. It may import config/, fpm/, act/, probe/ and shared/.
 *
 * This module: the incident log, /var/lib/php-relaunch/incidents.jsonl: one JSON object per restart
 * with the evidence taken before it. Bounded: past `maxBytes` the file becomes incidents.jsonl.1
 * (the previous .1 is dropped). Never written through a link.
 */
import * as v from "valibot";
import type { Evidence } from "../fpm/evidence.ts";
import { openRegularFile, readRegularText } from "../shared/safe_file.ts";
import { parseJsonWith, timestamp } from "../shared/schema.ts";

const num = v.number();
const int = v.pipe(v.number(), v.integer());
const str = v.string();
const orNull = <T extends v.GenericSchema>(schema: T) => v.nullable(schema);

const workerSchema = v.object({
  pid: int,
  state: str,
  requests: num,
  durationMs: num,
  method: str,
  uri: str,
  script: str,
  cpu: num,
  memory: num,
  // added with the check of each stuck worker: records written before lack it
  startedAt: v.optional(num),
});

const poolStatusSchema = v.object({
  pool: str,
  pm: str,
  acceptedConn: num,
  listenQueue: num,
  maxListenQueue: num,
  listenQueueLen: num,
  idle: num,
  active: num,
  total: num,
  maxChildrenReached: num,
  slowRequests: num,
  workers: v.array(workerSchema),
});

const settingsSchema = v.object({
  pool: str,
  pm: orNull(str),
  maxChildren: orNull(num),
  requestTerminateTimeout: orNull(str),
  requestSlowlogTimeout: orNull(str),
  listen: orNull(str),
  statusPath: orNull(str),
  statusListen: orNull(str),
  pingPath: orNull(str),
  slowlog: orNull(str),
  // added with the owners of the pool's logs: records written before lack it
  user: v.optional(orNull(str)),
});

const evidenceSchema = v.object({
  at: timestamp,
  status: orNull(poolStatusSchema),
  statusError: orNull(str),
  processes: v.array(v.object({
    pid: int,
    ppid: int,
    pgid: int,
    state: str,
    cpuSeconds: num,
    rssKb: num,
    ageSeconds: num,
    // added with per-pool memory: records written before lack it
    pool: v.optional(str),
  })),
  configFile: orNull(str),
  settings: orNull(settingsSchema),
  errorLogFile: orNull(str),
  slowlog: v.array(str),
  errorLog: v.array(str),
  memory: orNull(v.object({ total: num, available: num })),
  // added with upstream incidents: records written before lack it
  upstream: v.optional(v.object({ peer: str, blocked: num, of: num, forMs: num })),
});

/** An incident line, checked whole: a record that passes is one `report` can read. */
const recordSchema = v.object({
  version: v.literal(1),
  at: timestamp,
  host: str,
  target: str,
  // added with incident ids: records written before lack it
  incident: v.optional(str),
  // added with the pool's name: records written before lack it
  poolName: v.optional(str),
  label: str,
  pool: v.nullable(v.picklist(["hung", "busy"])),
  why: str,
  evidence: evidenceSchema,
  restart: v.nullable(v.object({ ok: v.boolean(), rung: v.nullable(str), steps: v.array(str) })),
  // added with php-fpm's configuration test: records written before lack it
  cannotStart: v.optional(v.array(str)),
  // added with the kernel log's OOM kills: records written before lack it
  oomKills: v.optional(v.array(v.object({ pid: int, rssKb: num, at: v.nullable(timestamp) }))),
  // added with child crash loops: an incident of another kind than a restart's
  kind: v.optional(v.picklist(["child_crashes"])),
  childCrashes: v.optional(v.object({
    status: v.picklist(["firing", "resolved"]),
    signals: v.record(str, num),
    since: timestamp,
    lastAt: timestamp,
    lost: v.array(v.object({ request: str, count: num })),
    lostError: v.optional(str),
    frames: v.array(str),
  })),
});

/** A line of the incident log as a record, or why it is not one (never echoing the line). */
export function parseIncident(line: string): IncidentRecord | string {
  return parseJsonWith(recordSchema, line, "not JSON (cut by a crash mid-write?)") as
    | IncidentRecord
    | string;
}

/** One incident as stored. */
export interface IncidentRecord {
  version: 1;
  at: number;
  host: string;
  target: string;
  /** The incident's id, as its alerts carry it. */
  incident?: string | undefined;
  /** The pool that failed, by its status page or its configuration, when known. */
  poolName?: string | undefined;
  /** The failure that led to the restart: 502, timeout, refused... */
  label: string;
  /** "hung" or "busy" when the status page was read, else null. */
  pool: "hung" | "busy" | null;
  /** Why the pool was judged so, or the probe's detail. */
  why: string;
  evidence: Evidence;
  restart: { ok: boolean; rung: string | null; steps: string[] } | null;
  /** A start failed: the errors of php-fpm's configuration test, which say why. */
  cannotStart?: string[] | undefined;
  /** The pool's processes the kernel's OOM killer ended since a minute before the failure. */
  oomKills?: { pid: number; rssKb: number; at: number | null }[] | undefined;
  /** Another kind of incident than a restart's (absent: a restart's, or a failure's). */
  kind?: "child_crashes" | undefined;
  /** A child crash loop: written when it opens, and again when it resolves (same incident). */
  childCrashes?: ChildCrashRecord | undefined;
}

/** What an incident of kind `child_crashes` records. */
export interface ChildCrashRecord {
  status: "firing" | "resolved";
  /** Crashes by signal name ("SIGSEGV"). */
  signals: Record<string, number>;
  since: number;
  lastAt: number;
  /** The requests nginx's error log names as lost at the crashes, as it wrote them. */
  lost: { request: string; count: number }[];
  /** Why nginx's error log was not read, when it was not. */
  lostError?: string | undefined;
  /** The newest core dump's top frames (coredumpctl), where there is one. */
  frames: string[];
}

/** Where incidents go: the file, or memory in tests. */
export interface IncidentLog {
  append(record: IncidentRecord): Promise<void>;
}

/** The incident log file at `path`. */
export function fileIncidentLog(path: string): IncidentLog {
  return { append: (record) => appendIncident(path, record) };
}

/** An incident log in memory, for tests. */
export function memoryIncidentLog(): IncidentLog & { records: IncidentRecord[] } {
  const records: IncidentRecord[] = [];
  return {
    records,
    append: (record) => {
      records.push(record);
      return Promise.resolve();
    },
  };
}

/** The most the log grows before it is rotated. */
export const MAX_INCIDENT_LOG = 2 * 1024 * 1024;

/** Appends `record` as one line, rotating first when the file would outgrow `maxBytes`. */
export async function appendIncident(
  path: string,
  record: IncidentRecord,
  maxBytes = MAX_INCIDENT_LOG,
): Promise<void> {
  const bytes = new TextEncoder().encode(JSON.stringify(record) + "\n");
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true, mode: 0o700 });
  const size = await Deno.lstat(path).then((s) => s.size, () => 0);
  if (size > 0 && size + bytes.length > maxBytes) await Deno.rename(path, `${path}.1`);
  const file = await openRegularFile(
    path,
    { append: true, create: true, mode: 0o600 },
    "incident log",
  );
  try {
    let rest = bytes;
    while (rest.length > 0) rest = rest.subarray(await file.write(rest));
  } finally {
    file.close();
  }
}

/** Incidents since `since` (ms since the epoch), oldest first, from the log and its rotation. */
export async function readIncidents(path: string, since: number): Promise<{
  incidents: IncidentRecord[];
  skipped: number;
  /** Why lines were skipped, "incidents.jsonl line 3: evidence.status: expected Object". */
  problems: string[];
}> {
  const incidents: IncidentRecord[] = [];
  const problems: string[] = [];
  for (const file of [`${path}.1`, path]) {
    let text: string;
    try {
      text = await readRegularText(file, 2 * MAX_INCIDENT_LOG);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    for (const [i, line] of text.split("\n").entries()) {
      if (line.trim() === "") continue;
      const record = parseIncident(line);
      if (typeof record === "string") {
        problems.push(`${file.slice(file.lastIndexOf("/") + 1)} line ${i + 1}: ${record}`);
      } else if (record.at >= since) incidents.push(record);
    }
  }
  return { incidents: incidents.sort((a, b) => a.at - b.at), skipped: problems.length, problems };
}
