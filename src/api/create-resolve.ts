/**
 * Which tasks of a create are inserted, and which are answered by tasks that exist: idempotent
 * replays (the same idempotency key and request) and unique_while holders (docs/design/queues.md
 * "Unique while"). Runs in the create's transaction.
 */
import type { Kysely } from "kysely";
import { IdempotencyConflictError } from "../errors.js";
import type { Database, TaskRow } from "../store/schema.js";
import { findTasks, findTasksByIdempotencyKeys, findUniqueHolders, insertTasksInTransaction, type NewTask } from "../store/tasks.js";

/**
 * Inserts the tasks that unique_while lets through (none of its queue and key holds it, and it is
 * the first of them in this batch), resolving idempotent replays; the others are answered, not
 * created, by the task that holds their key (an older one, or the first of the batch).
 */
export async function insertUnique(tasks: NewTask[], trx: Kysely<Database>): Promise<{ row: TaskRow; created: boolean }[]> {
  // Takes the keys' locks, held until commit: see findUniqueHolders.
  const holders = await findUniqueHolders(trx, tasks);
  const firstOfKey = new Map<string, number>();
  const answeredBy = tasks.map((t, i): { holder: string } | { batchMate: number } | undefined => {
    if (!t.uniqueWhile) return undefined;
    if (holders[i]) return { holder: holders[i] };
    const slot = `${t.queue ?? "default"}\u001f${t.key}`;
    const first = firstOfKey.get(slot);
    if (first !== undefined) return { batchMate: first };
    firstOfKey.set(slot, i);
    return undefined;
  });
  const toInsert = tasks.flatMap((t, i) => (answeredBy[i] === undefined ? [i] : []));
  const inserted = await resolveIdempotent(toInsert.map((i) => tasks[i]!), await insertTasksInTransaction(trx, toInsert.map((i) => tasks[i]!)), trx);
  const results: ({ row: TaskRow; created: boolean } | undefined)[] = tasks.map(() => undefined);
  toInsert.forEach((i, n) => (results[i] = inserted[n]));
  const held = [...new Set(answeredBy.flatMap((a) => (a && "holder" in a ? [a.holder] : [])))];
  const heldRows = new Map((await findTasks(trx, held)).map((row) => [row.id, row]));
  return answeredBy.map((a, i) => {
    if (a === undefined) return results[i]!;
    const row = "holder" in a ? heldRows.get(a.holder) : results[a.batchMate]?.row;
    // The holder's row is locked (task_unique_holders, migration 0030) until this create commits, so
    // retention cannot delete it meanwhile; a delete by hand that got there first is said so here.
    if (!row) throw new Error(`the task ${"holder" in a ? a.holder : "of the batch"} holding unique_while's key is gone`);
    return { row, created: false };
  });
}

/** Inserted rows and idempotent replays, in the order of `tasks`; a key reused with another request is IdempotencyConflictError. */
async function resolveIdempotent(tasks: NewTask[], inserted: TaskRow[], trx: Kysely<Database>) {
  const keys = [...new Set(tasks.flatMap((t) => (t.idempotencyKey === null ? [] : [t.idempotencyKey])))];
  const byKey = new Map((await findTasksByIdempotencyKeys(trx, keys)).map((row) => [row.idempotency_key!, row]));
  const insertedIds = new Set(inserted.map((row) => row.id));
  const unkeyed = inserted.filter((row) => row.idempotency_key === null);
  let next = 0;
  return tasks.map((task) => {
    if (task.idempotencyKey === null) return { row: unkeyed[next++]!, created: true };
    const row = byKey.get(task.idempotencyKey)!;
    if (row.request_hash !== task.requestHash) throw new IdempotencyConflictError(task.idempotencyKey, row.id);
    return { row, created: insertedIds.has(row.id) };
  });
}
