-- Tasks, their history and their output. See docs/ARCHITECTURE.md "Data".

create type task_status as enum ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled');

create table tasks (
  id bigint generated always as identity primary key,
  name text not null check (length(name) between 1 and 200),
  type text not null check (length(type) between 1 and 100),
  status task_status not null default 'queued',
  parameters jsonb not null default '{}'::jsonb,
  -- Higher runs first.
  priority integer not null default 0,
  attempts integer not null default 0 check (attempts >= 0),
  max_attempts integer not null check (max_attempts >= 1),
  timeout_ms integer not null check (timeout_ms > 0),
  run_at timestamptz not null default now(),
  idempotency_key text,
  -- Fingerprint of the create request, to tell a replay from a conflicting reuse of the key.
  request_hash text,
  result jsonb,
  last_error text,
  worker_id text,
  heartbeat_at timestamptz,
  cancel_requested_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz
);

create unique index tasks_idempotency_key_key on tasks (idempotency_key) where idempotency_key is not null;
-- ListTasks: newest first, optionally filtered by status and/or type; status counts.
create index tasks_status_id_idx on tasks (status, id desc);
create index tasks_type_id_idx on tasks (type, id desc);
-- Reconciler: running tasks whose heartbeat went stale.
create index tasks_running_heartbeat_idx on tasks (heartbeat_at) where status = 'running';

create table task_history (
  id bigint generated always as identity primary key,
  task_id bigint not null references tasks (id) on delete cascade,
  status task_status not null,
  attempt integer not null,
  details text not null,
  created_at timestamptz not null default now()
);

-- GetTaskHistory: one task's rows in order.
create index task_history_task_id_idx on task_history (task_id, id);

create table task_logs (
  task_id bigint not null references tasks (id) on delete cascade,
  seq integer not null,
  attempt integer not null,
  stream text not null check (stream in ('stdout', 'stderr', 'system')),
  line text not null,
  created_at timestamptz not null default now(),
  primary key (task_id, seq)
);
