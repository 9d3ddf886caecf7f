import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import { retryOnConflict } from "./db.js";
import type { AuditEventsTable, Database } from "./schema.js";

/**
 * The audit log (migration 0021): the ONE module that writes audit_events. Every change an operator
 * makes (a create, cancel, bulk action, queue or schedule setting, token, retention pass) writes one
 * row in the transaction of the change itself (`audited`), so a change that fails or is refused
 * leaves no row and a committed one always has its row. Rows are never changed through the API;
 * retention deletes those older than TASK_AUDIT_RETENTION (deleteOldAuditEvents).
 */

/** Who made a change and from where: a token (or `local`), or a schedule's tick (`schedule:<name>`, no role). */
export interface AuditActor {
  actor: string;
  role: string | null;
  clientAddress?: string | null;
  userAgent?: string | null;
  requestId?: string | null;
}

/** What a change did. */
export interface AuditChange {
  /** create, create_batch, cancel, bulk_cancel, queue_update, schedule_create, token_revoke, ... */
  action: string;
  /** Which tasks, queue, schedule or token; a bulk action's filter and counts. */
  resources?: Record<string, unknown>;
  /** The request's settings, never a secret. */
  parameters?: Record<string, unknown>;
  reason?: string | null;
}

/** A stored audit row. */
export type AuditEventRow = Selectable<AuditEventsTable>;

/** The actor as task history quotes it: "ci (operator)", "local (admin)", "schedule nightly". */
export function actorText(who: AuditActor): string {
  if (who.actor.startsWith("schedule:")) return `schedule ${who.actor.slice("schedule:".length)}`;
  return who.role ? `${who.actor} (${who.role})` : who.actor;
}

/** Writes one row per change, in the caller's transaction; returns their ids. */
export async function recordAudit(db: Kysely<Database>, who: AuditActor, changes: AuditChange[]): Promise<string[]> {
  return recordAuditEach(db, changes.map((change) => ({ who, change })));
}

/** One audit row to write: who, and what they changed. */
export interface AuditEntry {
  who: AuditActor;
  change: AuditChange;
}

/** Writes one row per entry (each with its own actor: group-committed creates), in one statement; returns their ids. */
export async function recordAuditEach(db: Kysely<Database>, entries: AuditEntry[]): Promise<string[]> {
  if (entries.length === 0) return [];
  const rows = await auditInsert(db, entries).execute();
  return rows.map((r) => String(r.id));
}

/** The statement that writes `entries` (non-empty), returning their ids; compile it to run it on a connection of one's own. */
export function auditInsert(db: Kysely<Database>, entries: AuditEntry[]) {
  return db
    .insertInto("audit_events")
    .values(
      entries.map(({ who, change: c }) => ({
        actor: who.actor,
        role: who.role,
        action: c.action,
        resources: JSON.stringify(c.resources ?? {}),
        parameters: JSON.stringify(c.parameters ?? {}),
        reason: c.reason ?? null,
        client_address: who.clientAddress ?? null,
        user_agent: who.userAgent ?? null,
        request_id: who.requestId ?? null,
      })),
    )
    .returning("id");
}

/**
 * Runs `change` in a transaction and writes the audit row `describe` makes of its result in the
 * same transaction (none when it returns undefined: nothing changed). A change that throws rolls
 * back and writes no row. The whole transaction is repeated when PostgreSQL aborts it to break a
 * deadlock (a lifecycle event against a worker's claim): a rolled-back try changed nothing, and the
 * events' guards make a repeat change only what is still to change.
 */
export async function audited<T>(db: Kysely<Database>, who: AuditActor, change: (trx: Transaction<Database>) => Promise<T>, describe: (result: T) => AuditChange | AuditChange[] | undefined): Promise<T> {
  return retryOnConflict(() =>
    db.transaction().execute(async (trx) => {
      const result = await change(trx);
      const described = describe(result);
      if (described) await recordAudit(trx, who, Array.isArray(described) ? described : [described]);
      return result;
    }),
  );
}

/**
 * The audit row of a change made in many short transactions (a bulk action, a retention pass):
 * the first batch that changes something writes the row, with `counter` set to what it changed;
 * each later batch adds to that counter in its own transaction. So every committed batch is
 * counted, none is without its row, and a run that changes nothing writes none. The counter is
 * the only thing ever updated in a row, and only here.
 */
export class AuditedBatches {
  private id: string | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly who: AuditActor,
    private readonly change: AuditChange,
    private readonly counter: string,
  ) {}

  /** Runs one batch (returning how many it changed) in a transaction with its audit write; `counter`: which count it adds to. */
  async run(batch: (trx: Transaction<Database>) => Promise<number>, counter = this.counter): Promise<number> {
    let inserted: string | undefined;
    const n = await this.db.transaction().execute(async (trx) => {
      const changed = await batch(trx);
      if (changed === 0) return 0;
      if (this.id === undefined) {
        [inserted] = await recordAudit(trx, this.who, [{ ...this.change, resources: { ...this.change.resources, [counter]: changed } }]);
      } else {
        await sql`update audit_events set resources = jsonb_set(resources, ${`{${counter}}`}::text[], to_jsonb(coalesce((resources ->> ${counter})::bigint, 0) + ${changed}::bigint))
          where id = ${this.id}::bigint`.execute(trx);
      }
      return changed;
    });
    // Only once committed: a batch that rolled back (and is retried) writes the row again.
    if (inserted !== undefined) this.id = inserted;
    return n;
  }
}

/** Which audit rows to list: every given filter must hold. */
export interface AuditFilter {
  actors?: string[];
  actions?: string[];
  /** At or after this. */
  since?: Date;
  /** Before this. */
  until?: Date;
  /** Only ids below this (keyset paging, newest first). */
  beforeId?: string;
  limit: number;
}

/** Audit rows newest first (id descending). */
export async function listAuditEvents(db: Kysely<Database>, filter: AuditFilter): Promise<AuditEventRow[]> {
  let q = db.selectFrom("audit_events").selectAll();
  if (filter.actors?.length) q = q.where("actor", "in", filter.actors);
  if (filter.actions?.length) q = q.where("action", "in", filter.actions);
  if (filter.since) q = q.where("at", ">=", filter.since);
  if (filter.until) q = q.where("at", "<", filter.until);
  if (filter.beforeId) q = q.where("id", "<", filter.beforeId as never);
  return q.orderBy("id", "desc").limit(filter.limit).execute();
}

/** Every matching row, newest first, read a page at a time (an export of any size in bounded memory). */
export async function* eachAuditEvent(db: Kysely<Database>, filter: Omit<AuditFilter, "limit" | "beforeId">, pageSize = 1_000): AsyncGenerator<AuditEventRow> {
  let beforeId: string | undefined;
  for (;;) {
    const page = await listAuditEvents(db, { ...filter, beforeId, limit: pageSize });
    yield* page;
    if (page.length < pageSize) return;
    beforeId = String(page.at(-1)!.id);
  }
}

/** Deletes up to `limit` rows older than `ageMs` (oldest first); returns how many. */
export async function deleteOldAuditEvents(db: Kysely<Database>, ageMs: number, limit: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    with doomed as (
      select id from audit_events where at < now() - make_interval(secs => ${ageMs / 1000}) order by at limit ${limit}
    ),
    deleted as (delete from audit_events a using doomed where a.id = doomed.id returning 1)
    select count(*) as n from deleted
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}
