import type { ServiceImpl } from "@connectrpc/connect";
import type { Config } from "../config.js";
import { InvalidTransitionError, NotPausableError, TaskNotFoundError } from "../errors.js";
import type { TaskControlService } from "../gen/task/v1/control_pb.js";
import type { TaskTypeCatalog } from "../plugins/catalog.js";
import type { PluginRegistry } from "../plugins/registry.js";
import { applyToBatch, countSelection, eligibility, nextBatch, type BulkContext, type TaskSelection } from "../store/bulk.js";
import type { Db } from "../store/db.js";
import { deleteTasks, pauseTasks, resumeTasks } from "../store/lifecycle/index.js";
import type { TaskRow } from "../store/schema.js";
import { findTask } from "../store/tasks.js";
import { validateBulkTasks } from "./bulk-validate.js";
import { taskToProto } from "./convert.js";
import { callerOf } from "./identity.js";
import { BULK_DELETE_ROLE, narrowFilter, requireRole, roleAllows } from "./roles.js";
import { validateTaskId } from "./validate.js";
import { actorText, audited, AuditedBatches } from "../store/audit.js";
import { auditActorOf } from "./audit-context.js";

/** Tasks one bulk statement touches: small enough that its locks and WAL stay short. */
export const BULK_BATCH_SIZE = 500;

/** How long one BulkTasks call works before it answers `complete: false` (under HTTP request timeouts). */
export const BULK_BUDGET_MS = 20_000;

/** What the handlers need. */
export interface TaskControlDeps {
  db: Db;
  registry: PluginRegistry;
  /** The task types registered in PostgreSQL (bulk retry re-queues those, not just this process's own). */
  catalog?: TaskTypeCatalog;
  /** shellRole: the least role whose bulk retry re-queues shell tasks (others skip them). */
  config?: Partial<Pick<Config, "shellRole">>;
}

/**
 * Runs a single-task change that may race with a worker (QUEUED -> RUNNING as it is claimed, say):
 * `step` tries the guarded statement for the task's current status; when it matches nothing the
 * status is read again and the step retried, up to three times.
 */
async function withCurrent(db: Db["kysely"], id: string, step: (task: TaskRow) => Promise<TaskRow | undefined>): Promise<TaskRow> {
  for (let attempt = 1; ; attempt++) {
    const task = await findTask(db, id);
    if (!task) throw new TaskNotFoundError(id);
    const changed = await step(task);
    if (changed) return changed;
    if (attempt === 3) throw new InvalidTransitionError(id, task.status, "change");
  }
}

/** A bulk selection as its audit row stores it: only the filters that were given. */
function selectionForAudit(s: TaskSelection): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(s)) {
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    out[key] = value instanceof Date ? value.toISOString() : value;
  }
  return out;
}

/** The TaskControlService handlers; errors are mapped by the routes' interceptor. */
export function createTaskControlService({ db: pair, registry, catalog, config }: TaskControlDeps): ServiceImpl<typeof TaskControlService> {
  const db = pair.kysely;
  // Pausability is the plugin's property, enabled on this server or not: workers may run types
  // (shell) that the API server itself has disabled.
  const pausableTypes = () => registry.list().filter((p) => p.pausable).map((p) => p.name);
  // Registered types (workers' and this process's own) that this server does not refuse, as RetryTask judges them.
  const runnableTypes = async () =>
    catalog ? (await catalog.list()).filter((t) => t.disabledReason === undefined).map((t) => t.name) : registry.list().filter((p) => p.disabledReason === undefined).map((p) => p.name);

  return {
    async pauseTask(req, ctx) {
      const id = validateTaskId(req.id);
      const actor = auditActorOf(ctx);
      const details = `paused by ${actorText(actor)}`;
      const row = await audited(db, actor, (trx) => withCurrent(trx, id, async (task) => {
        switch (task.status) {
          case "queued":
          case "retrying":
            if (task.cancel_requested_at) throw new InvalidTransitionError(id, `${task.status} with a cancel pending`, "pause");
            return (await pauseTasks(trx, [id], [], details))[0];
          case "running":
            if (!pausableTypes().includes(task.type)) throw new NotPausableError(id, task.type);
            if (task.cancel_requested_at) throw new InvalidTransitionError(id, "running with a cancel pending", "pause");
            return (await pauseTasks(trx, [id], [task.type], details))[0];
          default:
            throw new InvalidTransitionError(id, task.status, "pause");
        }
      }), () => ({ action: "pause", resources: { tasks: [id] } }));
      return { task: taskToProto(row) };
    },

    async resumeTask(req, ctx) {
      const id = validateTaskId(req.id);
      const actor = auditActorOf(ctx);
      const [row] = await audited(db, actor, (trx) => resumeTasks(trx, [id], `resumed by ${actorText(actor)}`), (rows) => (rows.length > 0 ? { action: "resume", resources: { tasks: [id] } } : undefined));
      if (row) return { task: taskToProto(row) };
      const task = await findTask(db, id);
      if (!task) throw new TaskNotFoundError(id);
      throw new InvalidTransitionError(id, task.status, "resume");
    },

    async deleteTask(req, ctx) {
      const id = validateTaskId(req.id);
      const deleted = await audited(db, auditActorOf(ctx), (trx) => deleteTasks(trx, [id]), (n) => (n === 1 ? { action: "delete", resources: { tasks: [id] } } : undefined));
      if (deleted === 1) return {};
      const task = await findTask(db, id);
      if (!task) throw new TaskNotFoundError(id);
      throw new InvalidTransitionError(id, `${task.status} (only SUCCEEDED, FAILED and CANCELLED tasks can be deleted)`, "delete");
    },

    async bulkTasks(req, ctx) {
      const { action, selection: requested, dryRun, reason } = validateBulkTasks(req);
      const who = callerOf(ctx);
      if (action === "delete") requireRole(who, BULK_DELETE_ROLE, "BulkTasks with BULK_ACTION_DELETE");
      // A restricted token's selection is narrowed to its queues and types; nothing left, nothing matched.
      const selection = narrowFilter(who, requested);
      if (!selection) return { matched: 0n, eligible: 0n, dryRun, changed: 0n, skipped: 0n, complete: true };
      // Retrying a shell task runs its command again: without the shell role, shell tasks are not eligible.
      const runnable = (await runnableTypes()).filter((t) => t !== "shell" || roleAllows(who.role, config?.shellRole ?? "admin"));
      const actor = auditActorOf(ctx);
      const context: BulkContext = { runnableTypes: runnable, pausableTypes: pausableTypes(), reason, actor: actorText(actor) };
      const eligible = eligibility(action, context);
      const counted = await countSelection(db, selection, eligible);
      const base = { matched: BigInt(counted.matched), eligible: BigInt(counted.eligible), dryRun };
      if (dryRun || counted.maxId === null || counted.eligible === 0) {
        return { ...base, changed: 0n, skipped: dryRun ? 0n : BigInt(counted.matched), complete: true };
      }
      // One audit row for the whole run: its filter, the counts it hit, and (added batch by batch) what it changed.
      const audit = new AuditedBatches(db, actor, { action: `bulk_${action}`, resources: { filter: selectionForAudit(selection), matched: counted.matched, eligible: counted.eligible }, reason }, "changed");
      const deadline = Date.now() + BULK_BUDGET_MS;
      let changed = 0;
      let afterId = "0";
      let complete = true;
      for (;;) {
        if (Date.now() > deadline || ctx.signal.aborted) {
          complete = false;
          break;
        }
        const ids = await nextBatch(db, selection, eligible, afterId, counted.maxId, BULK_BATCH_SIZE);
        if (ids.length === 0) break;
        changed += await applyToBatch(audit, action, ids, context);
        afterId = ids.at(-1)!;
      }
      return { ...base, changed: BigInt(changed), skipped: BigInt(Math.max(0, counted.matched - changed)), complete };
    },
  };
}
