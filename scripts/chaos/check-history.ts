import { FINISHED_STATUSES } from "../../src/store/lifecycle/states.js";

/** One history row, as the checker reads it. */
export interface HistoryRow {
  status: string;
  attempt: number;
}

/** A task's final state and its history, oldest first. */
export interface AuditedTask {
  id: string;
  status: string;
  attempts: number;
  history: HistoryRow[];
}

const terminal = new Set<string>(FINISHED_STATUSES);

/** Status changes the lifecycle allows (DESIGN.md). */
const allowed: Record<string, string[]> = {
  // queued -> queued, retrying -> retrying: an orphan's job re-enqueued by the reconciler.
  queued: ["running", "cancelled", "paused", "queued"],
  running: ["succeeded", "retrying", "failed", "cancelled", "paused"],
  retrying: ["running", "cancelled", "paused", "retrying"],
  // Resume (back to where it was), an outcome of an attempt paused mid-run, or (paused -> paused)
  // that attempt's loss or failure while the pause holds.
  paused: ["queued", "retrying", "running", "succeeded", "failed", "cancelled", "paused"],
  failed: ["queued"],
  cancelled: ["queued"],
  succeeded: [],
};

/**
 * The problems with one task's history: it must start QUEUED at attempt 0, take only allowed
 * steps, number attempts 1, 2, 3... without gaps (each RUNNING starts the next attempt, and its
 * outcome carries the same number), end in the task's current status, and record SUCCEEDED at most
 * once.
 */
export function checkTaskHistory(task: AuditedTask): string[] {
  const problems: string[] = [];
  const h = task.history;
  if (h.length === 0) return [`task ${task.id}: no history`];
  if (h[0]!.status !== "queued" || h[0]!.attempt !== 0) problems.push(`task ${task.id}: history starts ${h[0]!.status}:${h[0]!.attempt}, not queued:0`);
  let attempt = 0;
  // Whether the task is paused in the middle of an attempt (paused while RUNNING): its next
  // RUNNING row continues that attempt instead of starting the next one.
  let midAttempt = false;
  for (let i = 1; i < h.length; i++) {
    const prev = h[i - 1]!;
    const row = h[i]!;
    if (!allowed[prev.status]?.includes(row.status)) problems.push(`task ${task.id}: illegal step ${prev.status} -> ${row.status} (row ${i})`);
    if (row.status === "paused") midAttempt = prev.status === "running";
    if (row.status === "running" && prev.status === "paused" && midAttempt) {
      if (row.attempt !== attempt) problems.push(`task ${task.id}: resumed attempt ${row.attempt} during attempt ${attempt} (row ${i})`);
    } else if (row.status === "running") {
      if (row.attempt !== attempt + 1) problems.push(`task ${task.id}: attempt ${row.attempt} started after attempt ${attempt} (row ${i})`);
      attempt = row.attempt;
    } else if (row.status === "queued") {
      // A manual retry resets the count.
      attempt = 0;
      if (row.attempt !== 0) problems.push(`task ${task.id}: re-queued with attempt ${row.attempt}`);
    } else if (row.attempt !== attempt) {
      problems.push(`task ${task.id}: ${row.status} recorded for attempt ${row.attempt} during attempt ${attempt} (row ${i})`);
    }
  }
  const last = h.at(-1)!;
  if (last.status !== task.status) problems.push(`task ${task.id}: status ${task.status} but history ends ${last.status}`);
  if (last.attempt !== task.attempts) problems.push(`task ${task.id}: attempts ${task.attempts} but history ends at attempt ${last.attempt}`);
  if (h.filter((r) => r.status === "succeeded").length > 1) problems.push(`task ${task.id}: SUCCEEDED recorded more than once`);
  if (!terminal.has(task.status)) problems.push(`task ${task.id}: not terminal (${task.status})`);
  return problems;
}
