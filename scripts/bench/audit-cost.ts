/**
 * What the audit row costs a single CreateTask (issue 28): concurrent single creates through the
 * same group commit CreateTask uses (GroupCommit, at most 500 a statement, 2 in flight), in the
 * bench process against a database of its own, three ways:
 * - audited: insertTasksAudited, CreateTask's path (the create statement and the audit insert in one
 *   transaction on one connection);
 * - no audit insert: the same call with no audit entries (same transaction, same prepared
 *   statement; only the audit insert is missing);
 * - the statement alone: insertTasks (one prepared statement in its own implicit transaction), what
 *   a single create cost before creates were audited.
 * Rounds alternate (order reversed each round), best round each, after a warm-up of each.
 */
import { ensureDatabase } from "../../src/embedded-postgres.js";
import { createdChange } from "../../src/api/task-service.js";
import type { Logger } from "../../src/logger.js";
import type { AuditActor } from "../../src/store/audit.js";
import { openDb } from "../../src/store/db.js";
import { GroupCommit } from "../../src/store/group-commit.js";
import { migrate } from "../../src/store/migrate.js";
import type { TaskRow } from "../../src/store/schema.js";
import { insertTasks, insertTasksAudited, type NewTask } from "../../src/store/tasks.js";

/** Creates per second of each way, best round each, and the ratios. */
export interface AuditCost {
  creates: number;
  concurrency: number;
  rounds: number;
  perSec: { audited: number; noAuditInsert: number; statementAlone: number };
  /** Each round's rate, per way. */
  roundsPerSec: { audited: number[]; noAuditInsert: number[]; statementAlone: number[] };
  /** audited / no audit insert: what the audit row itself costs. */
  auditRowRatio: number;
  /** audited / statement alone: what auditing creates costs in all (the transaction and the row). */
  auditedToStatementAlone: number;
  /** Wall time an audited create adds over one without the audit insert, at this concurrency, in ms. */
  auditRowMsPerCreate: number;
}

const actor: AuditActor = { actor: "bench", role: "operator", clientAddress: "127.0.0.1", userAgent: "connect-es/2.1.2 bench", requestId: "00000000-0000-4000-8000-000000000000" };

function noop(i: number): NewTask {
  return { name: `audit-cost-${i}`, type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 30_000, runAt: null, idempotencyKey: null, requestHash: null };
}

/** `total` single writes, `concurrency` callers at a time, through a group commit of `flush`; writes per second. */
async function singles(flush: (tasks: NewTask[]) => Promise<TaskRow[]>, total: number, concurrency: number): Promise<number> {
  const group = new GroupCommit<NewTask, TaskRow>(flush, { maxBatch: 500, maxInFlight: 2 });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await group.write(noop(next++));
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/** The three ways (see the module comment), `rounds` times each, `total` creates each. */
export async function benchAuditCost(o: { clusterUrl: string; total: number; concurrency: number; rounds: number; logger: Logger }): Promise<AuditCost> {
  const url = new URL(o.clusterUrl);
  url.pathname = "/bench_audit";
  await ensureDatabase(o.clusterUrl, "bench_audit");
  const db = openDb({ connectionString: url.toString(), max: 10 }, o.logger);
  try {
    await migrate(db, o.logger);
    const ways = {
      audited: (tasks: NewTask[]) => insertTasksAudited(db, tasks, (rows) => rows.map((row) => ({ who: actor, change: createdChange([row]) }))),
      noAuditInsert: (tasks: NewTask[]) => insertTasksAudited(db, tasks, () => []),
      statementAlone: (tasks: NewTask[]) => insertTasks(db, tasks),
    };
    const names = Object.keys(ways) as (keyof typeof ways)[];
    for (const name of names) await singles(ways[name], Math.min(200, o.total), o.concurrency);
    const rates = { audited: [] as number[], noAuditInsert: [] as number[], statementAlone: [] as number[] };
    for (let round = 0; round < o.rounds; round++) {
      for (const name of round % 2 === 0 ? names : [...names].reverse()) rates[name].push(await singles(ways[name], o.total, o.concurrency));
    }
    const perSec = { audited: Math.max(...rates.audited), noAuditInsert: Math.max(...rates.noAuditInsert), statementAlone: Math.max(...rates.statementAlone) };
    return {
      creates: o.total,
      concurrency: o.concurrency,
      rounds: o.rounds,
      perSec,
      roundsPerSec: rates,
      auditRowRatio: perSec.audited / perSec.noAuditInsert,
      auditedToStatementAlone: perSec.audited / perSec.statementAlone,
      auditRowMsPerCreate: (1000 / perSec.audited - 1000 / perSec.noAuditInsert) * o.concurrency,
    };
  } finally {
    await db.close();
  }
}
