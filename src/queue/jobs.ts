/** The graphile-worker task identifier every task attempt runs under. */
export const RUN_TASK = "run_task";

/**
 * graphile-worker's own retries of a job cover infrastructure failures only (the handler threw
 * because, say, the database went away); task-level retries and backoff are ours.
 */
export const JOB_MAX_ATTEMPTS = 10;

/** What a run_task job carries. */
export interface RunTaskPayload {
  taskId: string;
  /** The attempt this job is meant to start; a job for an older attempt is stale and does nothing. */
  attempt: number;
}
