import type { Client } from "@connectrpc/connect";
import { TaskService, type Task } from "../../../src/gen/task/v1/task_pb.js";
import { canCancel, canRetry } from "../format";
import { errorText } from "./field-errors";

/** What can be done to several tasks at once. */
export type BulkAction = "cancel" | "retry";

export const BULK_ACTIONS: Record<BulkAction, { label: string; verb: string; done: string; applies(t: Task): boolean; danger: boolean }> = {
  cancel: { label: "Cancel", verb: "cancel", done: "cancelled", applies: (t) => canCancel(t.status), danger: true },
  retry: { label: "Retry", verb: "retry", done: "retried", applies: (t) => canRetry(t.status), danger: false },
};

/** What a bulk action did: how many tasks changed, and each one that could not be changed and why. */
export interface BulkOutcome {
  changed: number;
  refused: Array<{ id: bigint; reason: string }>;
}

// A few calls at a time: quick for a page of tasks, without a burst of hundreds at the server.
const PARALLEL_CALLS = 4;

/**
 * Applies `action` to each task by id, with the same RPCs as the task page (CancelTask,
 * RetryTask). A task that moved on meanwhile (finished before the cancel, retried by someone else)
 * is refused by the server and reported, never hidden.
 */
export async function applyToTasks(client: Client<typeof TaskService>, action: BulkAction, ids: bigint[]): Promise<BulkOutcome> {
  const outcome: BulkOutcome = { changed: 0, refused: [] };
  let next = 0;
  async function lane() {
    while (next < ids.length) {
      const id = ids[next++]!;
      try {
        if (action === "cancel") await client.cancelTask({ id, reason: "cancelled from the dashboard" });
        else await client.retryTask({ id });
        outcome.changed++;
      } catch (err) {
        outcome.refused.push({ id, reason: errorText(err) });
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL_CALLS, ids.length) }, lane));
  outcome.refused.sort((a, b) => (a.id < b.id ? -1 : 1));
  return outcome;
}
