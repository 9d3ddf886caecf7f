/**
 * The graphile-worker task identifier a task's attempts run under: one per (queue, type),
 * `run:<queue>:<type>`; its payload is `{taskId, attempt}` (store/jobs.ts addJobsOf). A worker
 * process claims only the identifiers of the queues it serves and the types it has enabled
 * (store/lifecycle claimNextAttempts), so it never takes a task it cannot run: such a task waits
 * QUEUED for a worker that can. Neither queue names nor type names contain ':'.
 */
export function runTaskIdentifier(queue: string, type: string): string {
  return `run:${queue}:${type}`;
}

/** The prefix every runTaskIdentifier starts with (for SQL that selects our jobs: `like 'run:%'`). */
export const RUN_TASK_PREFIX = "run:";

/**
 * The graphile-worker job flag a task's job carries for its queue, `queue:<name>`. A worker leaves
 * the jobs of a limited or held queue out of its batch claim by excluding their flag (queue-gate.ts).
 */
export function queueFlag(queue: string): string {
  return `queue:${queue}`;
}

/**
 * graphile-worker's own retries of a job cover infrastructure failures only (the handler threw
 * because, say, the database went away); task-level retries and backoff are ours.
 */
export const JOB_MAX_ATTEMPTS = 10;
