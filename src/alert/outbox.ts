/**
 * Alerts that could not be sent, kept on disk in <state>/outbox/ and retried on later runs, so
 * that a mail server or webhook being down loses nothing (monit drops them). One JSON file per
 * delivery, written atomically; bounded in number and age.
 */
import * as v from "valibot";
import type { Mail } from "../shared/deps.ts";
import { describeError } from "../shared/errors.ts";
import { tryLock } from "../shared/lock.ts";
import { logger } from "../shared/log.ts";
import { readRegularText, writeFileAtomic } from "../shared/safe_file.ts";
import { parseJsonWith, timestamp } from "../shared/schema.ts";

/**
 * One delivery to one channel. A webhook's address is not part of it: it is a secret, and
 * queued deliveries are files.
 */
export type Delivery =
  | { channel: "mail"; mail: Mail }
  | { channel: "webhook"; body: WebhookBody }
  | { channel: "alertmanager"; alerts: AlertmanagerAlert[] };

/** One alert as Alertmanager's `POST /api/v2/alerts` takes it. */
export interface AlertmanagerAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
}

/** A delivery that can never succeed (its channel is gone): dropped, not retried. */
export class Undeliverable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Undeliverable";
  }
}

/** What the webhook receives: Slack's `text`, and the same alert in fields. */
export interface WebhookBody {
  text: string;
  host: string;
  subject: string;
  line: string;
  details: readonly string[];
  /** The incident, when the alert belongs to one. */
  "incident_id"?: string | undefined;
  status?: "firing" | "resolved" | undefined;
  target?: string | undefined;
  kind?: string | undefined;
}

/** A queued delivery and its history. */
export interface QueuedDelivery {
  delivery: Delivery;
  queuedAt: number;
  attempts: number;
  lastError: string;
}

/** The queue's storage: files, or memory in tests. */
export interface Outbox {
  put(item: QueuedDelivery): Promise<void>;
  /** Every queued item, oldest first, with an id for `remove`/`update`. */
  list(): Promise<{ id: string; item: QueuedDelivery }[]>;
  remove(id: string): Promise<void>;
  update(id: string, item: QueuedDelivery): Promise<void>;
  /** Runs `work` unless another process is retrying the queue right now. */
  exclusive(work: () => Promise<void>): Promise<void>;
}

const text = v.string();
const lines = v.array(v.string());

/** A queued file, checked whole; unknown keys (a webhook URL queued by an older version) go. */
const queuedSchema = v.object({
  delivery: v.variant("channel", [
    v.object({
      channel: v.literal("mail"),
      mail: v.object({ from: text, to: v.pipe(lines, v.minLength(1)), subject: text, text }),
    }),
    v.object({
      channel: v.literal("webhook"),
      body: v.object({
        text,
        host: text,
        subject: text,
        line: text,
        details: lines,
        "incident_id": v.optional(text),
        status: v.optional(v.picklist(["firing", "resolved"])),
        target: v.optional(text),
        kind: v.optional(text),
      }),
    }),
    v.object({
      channel: v.literal("alertmanager"),
      alerts: v.pipe(
        v.array(v.object({
          labels: v.record(v.string(), text),
          annotations: v.record(v.string(), text),
          startsAt: text,
          endsAt: text,
        })),
        v.minLength(1),
      ),
    }),
  ]),
  queuedAt: timestamp,
  attempts: v.pipe(v.number(), v.integer(), v.minValue(0)),
  lastError: text,
});

/** A queued file's text as a delivery, or why it is not one (never echoing its bytes). */
export function parseQueued(json: string): QueuedDelivery | string {
  return parseJsonWith(queuedSchema, json, "not JSON (a syntax error)");
}

/** The largest queued delivery read: an alert is a few KiB. */
const MAX_QUEUED_FILE = 1024 * 1024;

/** At most this many queued deliveries; beyond it, in {@link dropOrder}. */
export const OUTBOX_MAX_ITEMS = 200;
/** A delivery still failing after this long is dropped (and logged). */
export const OUTBOX_MAX_AGE_MS = 2 * 86_400_000;

let sequence = 0;

/** The outbox in folder `dir` (created 0700 when first needed). */
export function fileOutbox(dir: string): Outbox {
  const pathOf = (id: string) => `${dir}/${id}.json`;
  return {
    async put(item) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      const id = `${item.queuedAt}-${Deno.pid}-${sequence++}`;
      await writeFileAtomic(pathOf(id), JSON.stringify(item), 0o600);
    },
    async list() {
      const ids: string[] = [];
      try {
        for await (const e of Deno.readDir(dir)) {
          if (e.isFile && e.name.endsWith(".json")) ids.push(e.name.slice(0, -5));
        }
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return [];
        throw err;
      }
      const out: { id: string; item: QueuedDelivery }[] = [];
      for (const id of ids.sort((a, b) => parseInt(a) - parseInt(b) || a.localeCompare(b))) {
        const item = await readRegularText(pathOf(id), MAX_QUEUED_FILE).then(
          parseQueued,
          describeError,
        );
        if (typeof item !== "string") {
          out.push({ id, item });
          continue;
        }
        logger.warn("Dropping unreadable queued alert {id}: {error}", { id, error: item });
        await Deno.remove(pathOf(id)).catch(() => {});
      }
      return out;
    },
    remove: (id) => Deno.remove(pathOf(id)).catch(() => {}),
    update: (id, item) => writeFileAtomic(pathOf(id), JSON.stringify(item), 0o600),
    async exclusive(work) {
      // no outbox yet: nothing was ever queued, and nothing is created just to find that out
      if (!(await Deno.stat(dir).then(() => true, () => false))) return;
      using lock = await tryLock(`${dir}/.lock`);
      if (lock !== null) await work();
    },
  };
}

/** An outbox in memory, for tests. */
export function memoryOutbox(): Outbox & { items: Map<string, QueuedDelivery> } {
  const items = new Map<string, QueuedDelivery>();
  return {
    items,
    put: (item) => {
      items.set(`${item.queuedAt}-${sequence++}`, item);
      return Promise.resolve();
    },
    list: () => Promise.resolve([...items].map(([id, item]) => ({ id, item }))),
    remove: (id) => Promise.resolve(void items.delete(id)),
    update: (id, item) => Promise.resolve(void items.set(id, item)),
    exclusive: (work) => work(),
  };
}

/** What a delivery attempt does: the real channels, or fakes; `signal` ends it. */
export type Deliver = (delivery: Delivery, signal: AbortSignal) => Promise<void>;

/** The incident a delivery belongs to, or null (an early warning, a pool's alert). */
export function incidentOf(d: Delivery): string | null {
  if (d.channel === "webhook") return d.body.incident_id ?? null;
  if (d.channel === "alertmanager") return d.alerts[0]?.labels["incident"] ?? null;
  return / #(\d{8}-\d{6}-\d{3})\]$/.exec(d.mail.subject)?.[1] ?? null;
}

/**
 * The order in which queued deliveries are dropped when there are too many: first an incident's
 * alerts between its first and its last (of each channel), then alerts of no incident, then the
 * rest; the oldest first within each. An incident's first alert says what happened, its last how
 * it stands: the repeats between them are what can go.
 */
export function dropOrder(queued: readonly { id: string; item: QueuedDelivery }[]): string[] {
  const byIncident = new Map<string, string[]>();
  for (const { id, item } of queued) {
    const incident = incidentOf(item.delivery);
    if (incident === null) continue;
    const key = `${item.delivery.channel} ${incident}`;
    byIncident.set(key, [...(byIncident.get(key) ?? []), id]);
  }
  const rank = (id: string, item: QueuedDelivery): number => {
    const incident = incidentOf(item.delivery);
    if (incident === null) return 1;
    const ids = byIncident.get(`${item.delivery.channel} ${incident}`)!;
    return id === ids[0] || id === ids.at(-1) ? 2 : 0;
  };
  return queued.map(({ id, item }, at) => ({ id, rank: rank(id, item), at }))
    .sort((a, b) => a.rank - b.rank || a.at - b.at).map((x) => x.id);
}

function describeDelivery(d: Delivery): string {
  if (d.channel === "mail") return `mail "${d.mail.subject}" to ${d.mail.to.join(",")}`;
  if (d.channel === "webhook") return `webhook "${d.body.subject}"`;
  return `Alertmanager alert "${d.alerts[0]?.annotations["summary"] ?? ""}"`;
}

/**
 * Retries every queued delivery once: delivered ones leave the queue, failing ones stay with one
 * more attempt, and ones older than {@link OUTBOX_MAX_AGE_MS} or beyond {@link OUTBOX_MAX_ITEMS}
 * (in {@link dropOrder}) are dropped with an error in the log. Stops between deliveries, and
 * ends the one under way, when `signal` aborts: the rest waits for the next retry. Never throws.
 */
export async function retryOutbox(
  outbox: Outbox,
  deliver: Deliver,
  now: number,
  signal: AbortSignal = new AbortController().signal,
): Promise<void> {
  try {
    await outbox.exclusive(async () => {
      const queued = await outbox.list();
      const excess = new Set(
        dropOrder(queued).slice(0, Math.max(0, queued.length - OUTBOX_MAX_ITEMS)),
      );
      for (const { id, item } of queued) {
        if (signal.aborted) return;
        const what = describeDelivery(item.delivery);
        if (excess.has(id) || now - item.queuedAt > OUTBOX_MAX_AGE_MS) {
          logger.error(
            "Dropping {what}, queued since {since}, after {attempts} attempts: {error}",
            {
              what,
              since: new Date(item.queuedAt).toISOString(),
              attempts: item.attempts,
              error: item.lastError,
            },
          );
          await outbox.remove(id);
          continue;
        }
        try {
          await deliver(item.delivery, signal);
          await outbox.remove(id);
          logger.info("Delivered {what}, queued since {since}.", {
            what,
            since: new Date(item.queuedAt).toISOString(),
          });
        } catch (err) {
          if (err instanceof Undeliverable) {
            logger.error("Dropping {what}, queued since {since}: {error}", {
              what,
              since: new Date(item.queuedAt).toISOString(),
              error: err.message,
            });
            await outbox.remove(id);
            continue;
          }
          await outbox.update(id, {
            ...item,
            attempts: item.attempts + 1,
            lastError: describeError(err),
          });
        }
      }
    });
  } catch (err) {
    logger.error("Cannot retry queued alerts: {error}", { error: describeError(err) });
  }
}
