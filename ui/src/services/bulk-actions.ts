import type { Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { BulkAction as BulkActionCode, TaskControlService, type TaskSelectionSchema } from "../../../src/gen/task/v1/control_pb.js";
import { TaskStatus, type Task } from "../../../src/gen/task/v1/task_pb.js";
import { canCancel, canPause, canRetry, isTerminal } from "../format";
import type { TaskListSearch } from "../routes/tasks/index.schema";

/** What can be done to several tasks at once. */
export type BulkAction = "cancel" | "retry" | "pause" | "resume" | "delete";

interface ActionInfo {
  label: string;
  verb: string;
  done: string;
  /** Whether the action may apply to a task in this state (the server's dry run has the last word). */
  applies(t: Task): boolean;
  danger: boolean;
  code: BulkActionCode;
}

export const BULK_ACTIONS: Record<BulkAction, ActionInfo> = {
  cancel: { label: "Cancel", verb: "cancel", done: "cancelled", applies: (t) => canCancel(t.status), danger: true, code: BulkActionCode.CANCEL },
  retry: { label: "Retry", verb: "retry", done: "retried", applies: (t) => canRetry(t.status), danger: false, code: BulkActionCode.RETRY },
  pause: {
    label: "Pause",
    verb: "pause",
    done: "paused",
    applies: (t) => canPause(t.status),
    danger: false,
    code: BulkActionCode.PAUSE,
  },
  resume: { label: "Resume", verb: "resume", done: "resumed", applies: (t) => t.status === TaskStatus.PAUSED, danger: false, code: BulkActionCode.RESUME },
  delete: { label: "Delete", verb: "delete", done: "deleted", applies: (t) => isTerminal(t.status), danger: true, code: BulkActionCode.DELETE },
};

/** The tasks an action is for: ticked rows, or everything a filter matches. */
export type BulkTarget = { kind: "ids"; ids: bigint[] } | { kind: "filter"; filter: TaskListSearch };

/**
 * The BulkTasks selection for a target, or undefined when the filter has a part BulkTasks cannot
 * express (a name prefix, schedules, typed ids): then "everything matching" is not offered, since a
 * wider selection than the list shows must never be acted on.
 */
export function selectionFor(target: BulkTarget): MessageInitShape<typeof TaskSelectionSchema> | undefined {
  if (target.kind === "ids") return { ids: target.ids };
  const f = target.filter;
  if (f.schedules.length > 0 || f.ids.length > 0) return undefined;
  const filtered = f.statuses.length > 0 || f.types.length > 0 || f.queues.length > 0 || !!f.createdAfter || !!f.createdBefore || !!f.name;
  return {
    // The list's name search is a prefix (ListTasks name_prefix); the selection matches the same way.
    namePrefix: f.name,
    statuses: f.statuses,
    types: f.types,
    queues: f.queues,
    createdAfter: f.createdAfter && timestampFromDate(f.createdAfter),
    createdBefore: f.createdBefore && timestampFromDate(f.createdBefore),
    // No filter at all: the view shows every task, and so does its selection (the server
    // refuses an empty selection without this, so a forgotten filter never means "all").
    all: !filtered,
  };
}

/** What a dry run counted: the tasks selected, and those the action applies to now. */
export interface BulkCount {
  matched: bigint;
  eligible: bigint;
}

/** A dry run: how many tasks the action would change. */
export async function countBulk(client: Client<typeof TaskControlService>, action: BulkAction, target: BulkTarget): Promise<BulkCount> {
  const selection = selectionFor(target);
  if (!selection) throw new Error("this filter cannot be acted on as a whole");
  const res = await client.bulkTasks({ action: BULK_ACTIONS[action].code, selection, dryRun: true });
  return { matched: res.matched, eligible: res.eligible };
}

/** What a bulk action did. */
export interface BulkOutcome {
  changed: bigint;
  skipped: bigint;
}

/**
 * Runs the action to the end of the selection: BulkTasks works in bounded batches and stops at a
 * time budget (complete = false), so it is called again until complete; a repeat never changes a
 * task twice (changed tasks are no longer eligible).
 */
export async function runBulk(client: Client<typeof TaskControlService>, action: BulkAction, target: BulkTarget): Promise<BulkOutcome> {
  const selection = selectionFor(target);
  if (!selection) throw new Error("this filter cannot be acted on as a whole");
  const outcome: BulkOutcome = { changed: 0n, skipped: 0n };
  for (;;) {
    const res = await client.bulkTasks({ action: BULK_ACTIONS[action].code, selection, dryRun: false, reason: action === "cancel" ? "cancelled from the dashboard" : "" });
    outcome.changed += res.changed;
    // Skipped counts of a continued run repeat the earlier runs' tasks: keep the last one's.
    outcome.skipped = res.skipped;
    if (res.complete) return outcome;
  }
}
