import { BulkAction, type BulkTasksRequest } from "../gen/task/v1/control_pb.js";
import type { BulkActionName, TaskSelection } from "../store/bulk.js";
import { Violations } from "./fields.js";

/** Most ids a selection may list. */
export const MAX_SELECTION_IDS = 10_000;

const actions: Partial<Record<BulkAction, BulkActionName>> = {
  [BulkAction.CANCEL]: "cancel",
  [BulkAction.RETRY]: "retry",
  [BulkAction.PAUSE]: "pause",
  [BulkAction.RESUME]: "resume",
  [BulkAction.DELETE]: "delete",
};

/** A validated BulkTasks request. */
export interface BulkRequest {
  action: BulkActionName;
  selection: TaskSelection;
  dryRun: boolean;
  reason: string | null;
}

/**
 * Checks a BulkTasks request: a known action, and a selection that names tasks explicitly (ids,
 * at least one filter, or `all`), with every value well-formed. Reports every problem at once.
 */
export function validateBulkTasks(req: BulkTasksRequest): BulkRequest {
  const v = new Violations();
  const action = actions[req.action];
  if (!action) v.add("action", `must be one of CANCEL, RETRY, PAUSE, RESUME, DELETE (got ${req.action})`);
  const sel = req.selection;
  const selection: TaskSelection = { ids: [], statuses: [], types: [], queues: [] };
  if (!sel) v.add("selection", "is required: ids, filters, or all");
  else {
    selection.ids = v.ids("selection.ids", sel.ids, MAX_SELECTION_IDS, "task", "; select by filter instead");
    selection.statuses = v.statuses("selection.statuses", sel.statuses);
    selection.types = v.types("selection.types", sel.types);
    selection.queues = v.queues("selection.queues", sel.queues);
    const { createdAfter, createdBefore } = v.createdRange("selection.", sel.createdAfter, sel.createdBefore);
    if (createdAfter) selection.createdAfter = createdAfter;
    if (createdBefore) selection.createdBefore = createdBefore;
    if (v.text("selection.name_contains", sel.nameContains) && sel.nameContains.trim() !== "") selection.nameContains = sel.nameContains;
    if (v.text("selection.name_prefix", sel.namePrefix) && sel.namePrefix !== "") selection.namePrefix = sel.namePrefix;
    const filtered =
      sel.statuses.length > 0 ||
      sel.types.length > 0 ||
      sel.queues.length > 0 ||
      sel.createdAfter !== undefined ||
      sel.createdBefore !== undefined ||
      sel.nameContains.trim() !== "" ||
      sel.namePrefix !== "";
    if (sel.ids.length > 0 && (filtered || sel.all)) v.add("selection.ids", "cannot be combined with filters or all");
    // An empty selection is a forgotten filter far more often than a wish to touch every task.
    if (sel.ids.length === 0 && !filtered && !sel.all) v.add("selection", "names no tasks: give ids, at least one filter, or set all to select every task");
  }
  const reason = v.reason("reason", req.reason);
  if (reason !== null && action !== "cancel") v.add("reason", "is only recorded by CANCEL");
  v.throwIfAny();
  return { action: action!, selection, dryRun: req.dryRun, reason };
}
