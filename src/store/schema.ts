import type { ColumnType, Generated, Insertable, Selectable } from "kysely";

/** Task statuses as stored in the task_status enum. */
export const taskStatuses = ["queued", "running", "retrying", "succeeded", "failed", "cancelled", "paused", "expired"] as const;
export type TaskStatus = (typeof taskStatuses)[number];

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
/** jsonb: read as parsed JSON, written as a JSON string (pg would send arrays as Postgres arrays). */
type Json<T> = ColumnType<T, string, string>;
/** bigint ids come back from pg as strings; keep them as strings to avoid precision loss. */
type BigIntId = ColumnType<string, never, never>;

export interface TasksTable {
  id: BigIntId;
  name: string;
  type: string;
  status: ColumnType<TaskStatus, TaskStatus | undefined, TaskStatus>;
  parameters: Json<Record<string, unknown>>;
  priority: ColumnType<number, number | undefined, number>;
  attempts: ColumnType<number, number | undefined, number>;
  max_attempts: number;
  timeout_ms: number;
  run_at: Timestamp;
  idempotency_key: string | null;
  request_hash: string | null;
  result: Json<Record<string, unknown> | null>;
  last_error: string | null;
  worker_id: string | null;
  heartbeat_at: NullableTimestamp;
  cancel_requested_at: NullableTimestamp;
  cancel_reason: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
  /** The schedule whose tick created the task (see schedules), and that tick. */
  schedule_id: ColumnType<string | null, string | null | undefined, string | null>;
  scheduled_at: NullableTimestamp;
  /** The queue the task waits in (migration 0012); default 'default'. */
  queue: ColumnType<string, string | undefined, string>;
  /** While PAUSED: the status it was paused from (queued, retrying: held; running: stopped mid-attempt). */
  paused_from: ColumnType<TaskStatus | null, TaskStatus | null | undefined, TaskStatus | null>;
  paused_at: NullableTimestamp;
  /** The task's own retry policy (both or neither); null: the workers' configured one. */
  backoff_base_ms: ColumnType<number | null, number | null | undefined, number | null>;
  backoff_max_ms: ColumnType<number | null, number | null | undefined, number | null>;
  /** The W3C traceparent of the create (migration 0022); written once, by the create statement. */
  traceparent: ColumnType<string | null, string | null | undefined, never>;
  /** Expiry (migration 0028): how long the task may wait for its first start, and the deadline that makes (created or retried + that). */
  expire_after_ms: ColumnType<number | null, number | null | undefined, number | null>;
  expires_at: NullableTimestamp;
  /** What the task competes for within its queue (migration 0026): per-key limits and turns; null: unkeyed. */
  key: ColumnType<string | null, string | null | undefined, never>;
  /** Its place in its key's round-robin (src/store/lifecycle/create.ts); null for unkeyed tasks. */
  key_turn: ColumnType<string | null, string | null | undefined, never>;
  /** Created with unique_while (migration 0030): answers later such creates of its queue and key. */
  key_unique: ColumnType<boolean, boolean | undefined, never>;
  /** The labels a worker must have to claim it (migration 0032, sorted "key=value" pairs); null: runs anywhere. */
  labels: ColumnType<string[] | null, string[] | null | undefined, never>;
  /** Units of its rate limit the task takes when it starts (migration 0033). */
  units: ColumnType<number, number | undefined, never>;
  /** What a keyed task has aged while waiting (migration 0033): the keyed claims order by priority + age_boost. */
  age_boost: ColumnType<number, number | undefined, number>;
}

export interface TaskHistoryTable {
  id: BigIntId;
  task_id: ColumnType<string, string, never>;
  status: TaskStatus;
  attempt: number;
  details: string;
  created_at: Generated<Date>;
  /** The writing transaction (xid8, as text); null for rows older than migration 0014. */
  xid: Generated<string | null>;
}

/** One chunk of consecutive output lines of one attempt (see migrations/0014). */
export interface TaskLogsTable {
  task_id: ColumnType<string, string, never>;
  first_seq: number;
  last_seq: number;
  attempt: number;
  /** One character per line: o = stdout, e = stderr, s = system. */
  streams: string;
  /** The lines joined by LF (a newline inside a line is stored as U+2424). */
  lines: string;
  created_at: Generated<Date>;
}

export interface WorkersTable {
  id: string;
  graphile_ids: string[];
  started_at: Generated<Date>;
  heartbeat_at: Generated<Date>;
  /** The second key of the process's liveness lock (migration 0009, store/worker-liveness.ts). */
  lock_key: ColumnType<number | null, number | null | undefined, number | null>;
  /** When the process last took its liveness lock. */
  locked_at: NullableTimestamp;
  /** What the process serves and how busy it is (migration 0012), refreshed by each heartbeat. */
  types: ColumnType<string[], string[] | undefined, string[]>;
  queues: ColumnType<string[], string[] | undefined, string[]>;
  slots: ColumnType<number, number | undefined, number>;
  busy: ColumnType<number, number | undefined, number>;
  /** Its labels (migration 0032, sorted "key=value" pairs): it claims tasks whose labels are among them. */
  labels: ColumnType<string[], string[] | undefined, string[]>;
  host: string | null;
  pid: number | null;
  /** A remote agent's name, stream address, replica and version (migration 0034); null for worker processes. */
  agent_name: ColumnType<string | null, string | null | undefined, string | null>;
  address: ColumnType<string | null, string | null | undefined, string | null>;
  replica: ColumnType<string | null, string | null | undefined, string | null>;
  version: ColumnType<string | null, string | null | undefined, string | null>;
}

/** Settings of a named queue (migration 0012); a queue without a row has the defaults. */
export interface QueuesTable {
  name: string;
  concurrency: number | null;
  paused: ColumnType<boolean, boolean | undefined, boolean>;
  updated_at: Generated<Date>;
  /** Derives a key for tasks created without one (src/key-template.ts); null: none. */
  key_template: ColumnType<string | null, string | null | undefined, string | null>;
  /** Most RUNNING tasks per key; null: unlimited. */
  key_concurrency: ColumnType<number | null, number | null | undefined, number | null>;
  /** Limits of named keys, overriding key_concurrency. */
  key_limits: ColumnType<Record<string, number>, Record<string, number> | undefined, Record<string, number>>;
  /** Weights of named keys in the turns (migration 0033); a key not named weighs 1. */
  key_weights: ColumnType<Record<string, number>, Record<string, number> | undefined, Record<string, number>>;
}

/** The progress of a task's current attempt (migration 0024): one row per task, overwritten. */
export interface TaskProgressTable {
  task_id: string;
  attempt: number;
  /** 0..1. */
  fraction: number;
  message: string;
  /** The attempt's first report, for the rate. */
  first_fraction: number;
  first_at: Date;
  updated_at: Date;
}

export interface TaskWatchersTable {
  task_id: string;
  server_id: string;
  expires_at: Date;
}

/** How a schedule treats ticks that passed while no scheduler ran. */
export type CatchUpPolicy = "skip" | "latest" | "backfill";
/** What a tick does while the schedule's previous task is unfinished. */
export type OverlapPolicy = "allow" | "skip" | "cancel_previous";

export interface SchedulesTable {
  id: BigIntId;
  name: string;
  cron: string;
  time_zone: string;
  type: string;
  parameters: Json<Record<string, unknown>>;
  priority: number;
  max_attempts: number;
  timeout_ms: number | null;
  paused: boolean;
  catch_up: CatchUpPolicy;
  backfill_limit: number;
  overlap: OverlapPolicy;
  next_run_at: NullableTimestamp;
  last_run_at: NullableTimestamp;
  last_task_id: string | null;
  last_error: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  /** The key of each tick's task (migration 0026); null: none given. */
  key: ColumnType<string | null, string | null | undefined, string | null>;
  /** The labels each tick's task requires (migration 0032); null: none. */
  labels: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
}

/**
 * API token roles, least first: each of reader, operator and admin includes the ones before it;
 * agent (a remote agent, migration 0029) stands apart: it may call AgentService only (src/api/roles.ts).
 */
export const apiRoles = ["reader", "operator", "admin", "agent"] as const;
export type ApiRole = (typeof apiRoles)[number];

export interface ApiTokensTable {
  id: Generated<string>;
  name: string;
  role: ApiRole;
  token_hash: Buffer;
  queues: Generated<string[]>;
  types: Generated<string[]>;
  /** An agent token's labels (migration 0032): its agents may have these or fewer; empty: any. */
  labels: Generated<string[]>;
  created_at: Generated<Date>;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

/** The audit log (migration 0021, src/store/audit.ts): append-only. */
export interface AuditEventsTable {
  id: BigIntId;
  at: Generated<Date>;
  actor: string;
  role: string | null;
  action: string;
  resources: Json<Record<string, unknown>>;
  parameters: Json<Record<string, unknown>>;
  reason: string | null;
  client_address: string | null;
  user_agent: string | null;
  request_id: string | null;
}

/** The service's tables, as Kysely sees them. */
export interface Database {
  api_tokens: ApiTokensTable;
  audit_events: AuditEventsTable;
  schedules: SchedulesTable;
  tasks: TasksTable;
  task_history: TaskHistoryTable;
  task_logs: TaskLogsTable;
  task_watchers: TaskWatchersTable;
  task_progress: TaskProgressTable;
  workers: WorkersTable;
  queues: QueuesTable;
}

export type TaskRow = Selectable<TasksTable>;

export type TaskProgressRow = Selectable<TaskProgressTable>;

/**
 * Every column of tasks, for RETURNING lists. Prepared statements name their columns instead of
 * using *, so a migration that adds a column cannot break the statements a running (older) worker
 * has prepared ("cached plan must not change result type").
 */
export const taskColumns = [
  "id", "name", "type", "status", "parameters", "priority", "attempts", "max_attempts", "timeout_ms", "run_at",
  "idempotency_key", "request_hash", "result", "last_error", "worker_id", "heartbeat_at",
  "cancel_requested_at", "cancel_reason", "created_at", "updated_at", "started_at", "finished_at",
  "schedule_id", "scheduled_at", "paused_from", "paused_at", "backoff_base_ms", "backoff_max_ms", "queue",
  "traceparent", "expire_after_ms", "expires_at", "key", "key_turn", "key_unique",
  "labels",
  "units",
] as const satisfies readonly (keyof TasksTable)[];
export type NewTaskRow = Insertable<TasksTable>;
export type TaskHistoryRow = Selectable<TaskHistoryTable>;
export type ScheduleRow = Selectable<SchedulesTable>;
