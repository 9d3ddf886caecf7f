/**
 * The task lifecycle, owned here and nowhere else: every statement that writes a task's status or
 * a task_history row is built in src/store/lifecycle/ (test/lifecycle-writers.test.ts fails
 * otherwise). Callers ask for an event; each event is defined once, with its guard (from which
 * states), its new state, its history row (one per changed task, in the same statement) and its
 * wake-ups:
 *
 * | event     | from                                   | to                                   | wake-ups                              | where        |
 * |-----------|----------------------------------------|--------------------------------------|---------------------------------------|--------------|
 * | create    | (none)                                 | QUEUED                               | job added (due-time wake if later)    | create.ts    |
 * | claim     | QUEUED, RETRYING (no cancel pending)   | RUNNING                              | job taken (deleted)                   | claim.ts     |
 * | heartbeat | RUNNING, PAUSED mid-attempt (owner)    | same (no history row; shortenLeases: an agent's stream ended) |              | attempt.ts   |
 * | outcome   | RUNNING, PAUSED mid-attempt (owner)    | SUCCEEDED, RETRYING, FAILED, CANCELLED, PAUSED held | next job for RETRYING  | attempt.ts   |
 * | rescue    | RUNNING, PAUSED mid-attempt (dead)     | RETRYING, FAILED, CANCELLED, PAUSED held | next job for RETRYING             | attempt.ts   |
 * | cancel    | unfinished                             | CANCELLED if waiting; else a request | job removed; task_cancel to workers   | control.ts   |
 * | pause     | QUEUED, RETRYING; RUNNING if pausable  | PAUSED                               | job removed; task_pause to workers    | control.ts   |
 * | resume    | PAUSED                                 | where it was (QUEUED, RETRYING, RUNNING) | job added; task_pause to workers  | control.ts   |
 * | retry     | FAILED, CANCELLED, EXPIRED             | QUEUED (attempts reset, new deadline)| job added                             | control.ts   |
 * | expire    | QUEUED, PAUSED held, never started, past its deadline | EXPIRED               | job removed                           | control.ts   |
 * | requeue   | QUEUED, RETRYING without a job         | same                                 | job added                             | control.ts   |
 * | delete    | SUCCEEDED, FAILED, CANCELLED, EXPIRED  | (gone, with its history)             |                                       | control.ts   |
 *
 * What an attempt's ending becomes is decided once: afterAttempt (states.ts) applies the task's
 * retry policy to what the worker saw, and endAttempts (attempt.ts) what the row's state makes of
 * it (a pending cancel, a pause, a poison task).
 */
export * from "./states.js";
export { forcing } from "./statement.js";
export { createTasks, findUniqueHolders, type NewTask, type UniqueWhile } from "./create.js";
export {
  claimAttempt,
  claimKeyedAttempts,
  claimRateLimitedAttempt,
  claimNextAttempts,
  type KeyedAttempts,
  type NextAttempts,
  type RateLimitedAttempt,
} from "./claim.js";
export {
  heartbeat,
  recordOutcome,
  recordOutcomes,
  rescueLostAttempts,
  rescueStatement,
  shortenLeases,
  type AttemptRef,
  type LostAttempts,
  type OutcomeRecord,
  type OwnedAttempt,
  type WorkerInfo,
} from "./attempt.js";
export {
  cancelTasks,
  deleteExpired,
  deleteTasks,
  expireOverdue,
  finishPendingCancels,
  msToNextExpiry,
  GUARDS,
  pauseTasks,
  requeueOrphans,
  resumeTasks,
  retryTasks,
  type CancelRequest,
} from "./control.js";
