/**
 * Every PostgreSQL NOTIFY channel the service sends or listens on, named once. The store's
 * statements notify them through these constants; the triggers in migrations/ and graphile-worker's
 * own SQL notify them by literal (SQL cannot import this module: test/channels.test.ts checks that
 * every channel a migration notifies is named here). A process listens on all of them over one
 * connection (listen.ts).
 *
 * A notification is a hint, never the only path: it is lost while the listener is disconnected, so
 * every subscriber has a fallback (heartbeats, polls, a wake-up when the listener reconnects).
 */

/** Cancellation requests for running tasks, to workers. Payload: the task id. */
export const CANCEL_CHANNEL = "task_cancel";

/** Pauses and resumes of running attempts, to workers. Payload: `<task id>:<new status>` (`paused` or `running`). */
export const PAUSE_CHANNEL = "task_pause";

/** Due times of jobs enqueued for later, to workers (see WakeSchedule). Payload: epoch ms, comma-separated. */
export const WAKE_CHANNEL = "task_wake";

/** A queue paused, resumed or re-limited (store/queues.ts), to workers. Payload: the queue's name. */
export const QUEUE_CHANNEL = "task_queue";

/** Schedules created, changed or deleted (trigger of migration 0010), to schedulers. Payload: the operation. */
export const SCHEDULES_CHANNEL = "schedules_changed";

/** A watched task's history or logs changed (triggers of migrations 0004, 0005, 0014), to API servers. Payload: the task id, or `*`. */
export const TASK_EVENTS_CHANNEL = "task_events";

/** graphile-worker's add_job and add_jobs announce inserted jobs here (its own migrations), to workers. */
export const JOBS_INSERT_CHANNEL = "jobs:insert";

/** Every channel above. */
export const CHANNELS = [CANCEL_CHANNEL, PAUSE_CHANNEL, WAKE_CHANNEL, QUEUE_CHANNEL, SCHEDULES_CHANNEL, TASK_EVENTS_CHANNEL, JOBS_INSERT_CHANNEL] as const;

/** A channel named here: the only kind a listener subscribes to. */
export type Channel = (typeof CHANNELS)[number];
