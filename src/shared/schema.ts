/**
 * What the valibot schemas of the configuration, the flags, the state file and the status page
 * share: transforms whose problems are whole sentences, and how a problem's key is written.
 */
import * as v from "valibot";

/** Where a {@link transform} reports a problem. */
export interface Issues {
  addIssue(info: { message: string }): void;
  readonly NEVER: never;
}

/** Records a validation problem whose message says it all; for {@link transform}s. */
export function custom(ctx: Issues, message: string): never {
  ctx.addIssue({ message });
  return ctx.NEVER;
}

/** `schema`, then `fn` on its output: what `fn` returns, or the problem it gave {@link custom}. */
export function transform<I, O>(
  schema: v.GenericSchema<unknown, I>,
  fn: (value: I, ctx: Issues) => O,
): v.GenericSchema<unknown, O> {
  return v.pipe(
    schema,
    v.rawTransform<I, O>(({ dataset, addIssue, NEVER }) => fn(dataset.value, { addIssue, NEVER })),
  );
}

/** A problem's key as a file would write it, `target[0].timeout`; "" at the top level. */
export function keyPath(path: readonly { key: unknown }[] | undefined): string {
  return (path ?? []).map((p, i) =>
    typeof p.key === "number" ? `[${p.key}]` : `${i === 0 ? "" : "."}${String(p.key)}`
  ).join("");
}

/** The largest time a `Date` can hold: a later one makes `toISOString` throw. */
export const MAX_TIME = 8.64e15;

/** A time in milliseconds since the epoch that a `Date` can show. */
export const timestamp = v.pipe(v.number(), v.minValue(0), v.maxValue(MAX_TIME));

/**
 * A problem of data read back from a file (state, incident, queued alert) as "key: what was
 * expected"; never the value found, which may be anything.
 */
export function issueLine(issue: v.BaseIssue<unknown>): string {
  const key = keyPath(issue.path) || "top level";
  return issue.input === undefined
    ? `${key}: missing`
    : `${key}: expected ${issue.expected ?? "another value"}`;
}

/**
 * JSON text read back from a file, checked whole by `schema`: the value, or why it is not one
 * (`notJson`, or "key: expected …"); never the text itself, which may be anything.
 */
export function parseJsonWith<T>(
  schema: v.GenericSchema<unknown, T>,
  text: string,
  notJson: string,
): T | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return notJson;
  }
  const parsed = v.safeParse(schema, data);
  return parsed.success ? parsed.output : issueLine(parsed.issues[0]);
}
