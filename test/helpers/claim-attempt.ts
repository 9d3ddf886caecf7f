import { sql } from "kysely";
import { queryPrepared, type Db } from "../../src/store/db.js";
import type { TaskRow } from "../../src/store/schema.js";
import { transition } from "../../src/store/transitions.js";

/**
 * Starts attempt `attempt` of one named task: QUEUED/RETRYING -> RUNNING, attempts incremented,
 * owner and heartbeat set, history row written, job `jobId` deleted, in one guarded statement.
 * Returns undefined when the task is not waiting for exactly this attempt, a cancel is pending, or
 * its queue's gate refuses it: task_queue_admits(queue) (migration 0012) says no when the queue is
 * paused, or has a concurrency limit that its RUNNING tasks already reach; for a limited queue it
 * locks the queue's row, so claims racing for its last slot go one after the other. Workers claim
 * through claimNextAttempts (fetch and claim in one statement); this is the same claim for a task
 * known by id, for tests that race a worker.
 */
export async function claimAttempt(db: Db, taskId: string, attempt: number, workerId: string, jobId: string): Promise<TaskRow | undefined> {
  const rows = await queryPrepared(db, "task_claim_attempt", transition({
    change: {
      set: sql`status = 'running', attempts = attempts + 1, worker_id = ${workerId}, job_id = ${jobId}, heartbeat_at = now(), started_at = now()`,
      // The queue gate comes last: it may lock the queue's row, which only a claimable task should do.
      where: sql`id = ${taskId} and status in ('queued', 'retrying') and attempts = ${attempt - 1} and cancel_requested_at is null
        and task_queue_admits(queue)`,
    },
    details: sql`'attempt ' || attempts || ' started on ' || ${workerId}`,
    completeJob: true,
  }));
  return rows[0];
}
