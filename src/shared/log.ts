/**
 * Logging through LogTape: one line per event in the log file, the same on stderr when it is a
 * terminal (or with --verbose). Everything else logs through {@link logger}.
 */
import {
  configureSync,
  getLogger,
  type LogLevel,
  type LogRecord,
  type Sink,
  withFilter,
} from "@logtape/logtape";
import { describeError } from "./errors.ts";
import { escapeControl } from "./redact.ts";
import { openRegularFile } from "./safe_file.ts";

/** The application's logger. */
export const logger = getLogger(["php-relaunch"]);

/** `2026-11-25T18:40:01Z web1 502 PHP restarted.`: the original's line, with an ISO-8601 time. */
export function formatLine(timestamp: number, hostname: string, message: string): string {
  const iso = new Date(timestamp).toISOString().replace(/\.\d{3}Z$/, "Z");
  return `${iso} ${hostname} ${message}`;
}

/** Renders a LogTape message template with its values. */
export function renderMessage(record: LogRecord): string {
  return record.message
    .map((part, i) => {
      if (i % 2 === 0) return String(part);
      if (part instanceof Error) return describeError(part);
      return typeof part === "string" ? part : JSON.stringify(part);
    })
    .join("");
}

/**
 * Opens the log for appending, refusing a symlink or anything but a regular file: as root, a link
 * planted where the log goes must not make us write elsewhere.
 * @throws {Error} naming the path and the reason.
 */
export function openAppendNoFollow(path: string, mode = 0o640): Promise<Deno.FsFile> {
  return openRegularFile(path, { append: true, create: true, mode }, "log file");
}

const encoder = new TextEncoder();

/**
 * One JSON object per line with the same event as the text line: time, host, level, message,
 * and the event's fields (target, label, service...).
 */
export function jsonLine(record: LogRecord, hostname: string): string {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record.properties)) {
    // the message property is the message itself
    if (key !== "message") fields[key] = value instanceof Error ? describeError(value) : value;
  }
  return JSON.stringify({
    time: new Date(record.timestamp).toISOString(),
    host: hostname,
    level: record.level,
    message: renderMessage(record),
    ...fields,
  });
}

function lineSink(
  write: (bytes: Uint8Array) => void,
  hostname: string,
  format: "text" | "json",
): Sink {
  return (record) => {
    const line =
      (format === "json"
        ? jsonLine(record, hostname)
        : formatLine(record.timestamp, hostname, escapeControl(renderMessage(record)))) + "\n";
    try {
      write(encoder.encode(line));
    } catch {
      // a full disk must not stop the watchdog from restarting php-fpm
    }
  };
}

/** Writes all of `bytes` to `out`, which may take them a part at a time. */
export function writeAllSync(out: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let rest = bytes;
  while (rest.length > 0) rest = rest.subarray(out.writeSync(rest));
}

/** Where log lines go. */
export interface LogTargets {
  /** The opened log file, or null for none. */
  file: Deno.FsFile | null;
  /** Also write to stderr. */
  stderr: boolean;
  /** Include debug lines (every probe) on stderr. */
  verbose: boolean;
  hostname: string;
  /** Lines of text, or JSON objects (the file only: a terminal gets text). */
  format?: "text" | "json";
}

/**
 * Configures LogTape. Writes are synchronous: the log lines are few, and a line must be on disk
 * before a `Deno.exit` that follows it.
 */
export function setupLogging(targets: LogTargets): void {
  const sinks: Record<string, Sink> = {};
  const names: string[] = [];
  const file = targets.file;
  if (file !== null) {
    sinks.file = withFilter(
      lineSink((b) => writeAllSync(file, b), targets.hostname, targets.format ?? "text"),
      "info",
    );
    names.push("file");
  }
  if (targets.stderr) {
    const level: LogLevel = targets.verbose ? "debug" : "info";
    sinks.stderr = withFilter(
      lineSink((b) => writeAllSync(Deno.stderr, b), targets.hostname, "text"),
      level,
    );
    names.push("stderr");
  }
  configureSync({
    reset: true,
    sinks,
    loggers: [
      { category: ["php-relaunch"], lowestLevel: "debug", sinks: names },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: names },
    ],
  });
}
