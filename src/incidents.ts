/**
 * The incident log, /var/lib/php-relaunch/incidents.jsonl: one JSON object per restart with the
 * evidence taken before it. Bounded: past `maxBytes` the file becomes incidents.jsonl.1 (the
 * previous .1 is dropped). Never written through a link.
 */
import type { Evidence } from "./evidence.ts";
import { openRegularFile } from "./safe_file.ts";

/** One incident as stored. */
export interface IncidentRecord {
  version: 1;
  at: number;
  host: string;
  target: string;
  /** The failure that led to the restart: 502, timeout, refused... */
  label: string;
  /** "hung" or "busy" when the status page was read, else null. */
  pool: "hung" | "busy" | null;
  /** Why the pool was judged so, or the probe's detail. */
  why: string;
  evidence: Evidence;
  restart: { ok: boolean; rung: string | null; steps: string[] } | null;
}

/** The incident log of a state folder. */
export function incidentsPath(stateDir: string): string {
  return `${stateDir}/incidents.jsonl`;
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
}> {
  const incidents: IncidentRecord[] = [];
  let skipped = 0;
  for (const file of [`${path}.1`, path]) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        const record = JSON.parse(line) as IncidentRecord;
        if (record.version !== 1 || typeof record.at !== "number" || !record.evidence) {
          skipped++;
        } else if (record.at >= since) incidents.push(record);
      } catch {
        // a line cut by a crash mid-write: the rest of the log is still good
        skipped++;
      }
    }
  }
  return { incidents: incidents.sort((a, b) => a.at - b.at), skipped };
}
