import { timestampDate } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError, type FieldViolation } from "../errors.js";
import { BulkAction, type BulkTasksRequest } from "../gen/task/v1/control_pb.js";
import type { BulkActionName, TaskSelection } from "../store/bulk.js";
import type { TaskStatus } from "../store/schema.js";
import { statusFromProto } from "./convert.js";
import { containsUnstorable, MAX_FILTER_VALUES, queueNameProblem, UNSTORABLE_REASON } from "./validate.js";

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
  const violations: FieldViolation[] = [];
  const add = (field: string, reason: string) => violations.push({ field, reason });
  const action = actions[req.action];
  if (!action) add("action", `must be one of CANCEL, RETRY, PAUSE, RESUME, DELETE (got ${req.action})`);
  const sel = req.selection;
  const selection: TaskSelection = { ids: [], statuses: [], types: [], queues: [] };
  if (!sel) add("selection", "is required: ids, filters, or all");
  else {
    if (sel.ids.length > MAX_SELECTION_IDS) add("selection.ids", `must list at most ${MAX_SELECTION_IDS} ids; select by filter instead`);
    else sel.ids.forEach((id, i) => (id <= 0n ? add(`selection.ids[${i}]`, "must be a positive task id") : selection.ids.push(id.toString())));
    if (sel.statuses.length > MAX_FILTER_VALUES) add("selection.statuses", `must list at most ${MAX_FILTER_VALUES} statuses`);
    else {
      sel.statuses.forEach((s, i) => {
        const status: TaskStatus | undefined = statusFromProto(s);
        if (status) selection.statuses.push(status);
        else add(`selection.statuses[${i}]`, `is not a valid status (${s})`);
      });
    }
    if (sel.types.length > MAX_FILTER_VALUES) add("selection.types", `must list at most ${MAX_FILTER_VALUES} types`);
    else {
      sel.types.forEach((t, i) => {
        if (t.trim() === "") add(`selection.types[${i}]`, "must not be empty");
        else if (t.length > 200) add(`selection.types[${i}]`, "must be at most 200 characters");
        else if (containsUnstorable(t)) add(`selection.types[${i}]`, UNSTORABLE_REASON);
        else selection.types.push(t);
      });
    }
    if (sel.queues.length > MAX_FILTER_VALUES) add("selection.queues", `must list at most ${MAX_FILTER_VALUES} queues`);
    else {
      sel.queues.forEach((q, i) => {
        const problem = queueNameProblem(q);
        if (problem) add(`selection.queues[${i}]`, problem);
        else selection.queues.push(q);
      });
    }
    for (const [field, ts] of [["created_after", sel.createdAfter], ["created_before", sel.createdBefore]] as const) {
      if (!ts) continue;
      const d = timestampDate(ts);
      const t = d.getTime();
      if (Number.isNaN(t) || t < Date.UTC(1970, 0, 1) || t > Date.UTC(9999, 11, 31)) add(`selection.${field}`, "must be a time between 1970 and 9999");
      else if (field === "created_after") selection.createdAfter = d;
      else selection.createdBefore = d;
    }
    if (selection.createdAfter && selection.createdBefore && selection.createdAfter >= selection.createdBefore) {
      add("selection.created_before", "must be later than created_after");
    }
    if (sel.nameContains.length > 200) add("selection.name_contains", "must be at most 200 characters");
    else if (containsUnstorable(sel.nameContains)) add("selection.name_contains", UNSTORABLE_REASON);
    else if (sel.nameContains.trim() !== "") selection.nameContains = sel.nameContains;
    if (sel.namePrefix.length > 200) add("selection.name_prefix", "must be at most 200 characters");
    else if (containsUnstorable(sel.namePrefix)) add("selection.name_prefix", UNSTORABLE_REASON);
    else if (sel.namePrefix !== "") selection.namePrefix = sel.namePrefix;
    const filtered =
      sel.statuses.length > 0 ||
      sel.types.length > 0 ||
      sel.queues.length > 0 ||
      sel.createdAfter !== undefined ||
      sel.createdBefore !== undefined ||
      sel.nameContains.trim() !== "" ||
      sel.namePrefix !== "";
    if (sel.ids.length > 0 && (filtered || sel.all)) add("selection.ids", "cannot be combined with filters or all");
    // An empty selection is a forgotten filter far more often than a wish to touch every task.
    if (sel.ids.length === 0 && !filtered && !sel.all) add("selection", "names no tasks: give ids, at least one filter, or set all to select every task");
  }
  const reason = req.reason.trim();
  if (reason.length > 500) add("reason", "must be at most 500 characters");
  else if (containsUnstorable(reason)) add("reason", UNSTORABLE_REASON);
  else if (reason !== "" && action !== "cancel") add("reason", "is only recorded by CANCEL");
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  return { action: action!, selection, dryRun: req.dryRun, reason: reason || null };
}
