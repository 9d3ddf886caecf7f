import type { Kysely } from "kysely";
import { deleteExpired, FINISHED_STATUSES } from "./lifecycle/index.js";
import type { Database } from "./schema.js";
import { AuditedBatches, deleteOldAuditEvents, type AuditActor } from "./audit.js";
import { deleteExpiredFileChunks, RETENTION_CHUNKS_PER_BATCH } from "./files.js";

/** How long finished tasks are kept, per outcome; 0 keeps them forever. */
export interface RetentionPolicy {
  succeededMs: number;
  failedMs: number;
  cancelledMs: number;
  /** Unset: kept. */
  expiredMs?: number;
}

/** What one retention pass deleted, per outcome. */
export interface RetentionResult {
  succeeded: number;
  failed: number;
  cancelled: number;
  expired: number;
  /** Audit rows older than the audit retention. */
  auditEvents: number;
  /** Chunks of the expired tasks' files, deleted before the tasks (RETENTION_CHUNKS_PER_BATCH a statement). */
  fileChunks: number;
  /** Statements run (one batch each). */
  batches: number;
}

/** Who a retention pass is, in the audit log. */
export const RETENTION_ACTOR: AuditActor = { actor: "system:retention", role: null };

/**
 * One retention pass: for each outcome with a retention age, empties the expired tasks' files
 * (deleteExpiredFileChunks) and deletes the tasks in batches of `batchSize`, then audit rows older than `policy.auditMs`, until none is left or `budgetMs` has
 * been spent (the next pass continues). Between batches nothing is held, so workers and API
 * requests interleave freely. A pass that deletes anything writes one audit row (`retention_run`,
 * its counts per outcome), in the transaction of each batch (AuditedBatches).
 */
export async function deleteExpiredTasks(
  db: Kysely<Database>,
  policy: RetentionPolicy & { auditMs?: number },
  batchSize: number,
  budgetMs = 60_000,
  stop?: AbortSignal,
): Promise<RetentionResult> {
  const result: RetentionResult = { succeeded: 0, failed: 0, cancelled: 0, expired: 0, auditEvents: 0, fileChunks: 0, batches: 0 };
  const deadline = Date.now() + budgetMs;
  const ages = { succeeded: policy.succeededMs, failed: policy.failedMs, cancelled: policy.cancelledMs, expired: policy.expiredMs ?? 0 };
  const audit = new AuditedBatches(db, RETENTION_ACTOR, { action: "retention_run", parameters: { ...policy } }, "succeeded");
  for (const status of FINISHED_STATUSES) {
    if (ages[status] <= 0) continue;
    // Their files first, a few MiB a statement, so deleting the tasks cascades to empty files only.
    for (;;) {
      if (Date.now() > deadline || stop?.aborted) return result;
      const n = await deleteExpiredFileChunks(db, status, ages[status], RETENTION_CHUNKS_PER_BATCH);
      result.batches++;
      result.fileChunks += n;
      if (n < RETENTION_CHUNKS_PER_BATCH) break;
    }
    for (;;) {
      if (Date.now() > deadline || stop?.aborted) return result;
      const n = await audit.run((trx) => deleteExpired(trx, status, ages[status], batchSize), status);
      result.batches++;
      result[status] += n;
      if (n < batchSize) break;
    }
  }
  const auditMs = policy.auditMs ?? 0;
  while (auditMs > 0) {
    if (Date.now() > deadline || stop?.aborted) return result;
    const n = await audit.run((trx) => deleteOldAuditEvents(trx, auditMs, batchSize), "auditEvents");
    result.batches++;
    result.auditEvents += n;
    if (n < batchSize) break;
  }
  return result;
}
