-- Schedules: a task template plus a cron expression in a time zone. Each tick creates one task,
-- guarded by a unique (schedule_id, scheduled_at) key on tasks, so racing schedulers in several
-- processes, or one restarted in the middle of a tick, can never create a tick's task twice.
-- See docs/design/schedules.md.

create table schedules (
  id bigint generated always as identity primary key,
  name text not null unique check (length(name) between 1 and 200),
  -- Five fields (or six with seconds first), or a nickname such as @hourly.
  cron text not null check (length(cron) between 1 and 200),
  -- IANA zone the expression is read in.
  time_zone text not null default 'UTC',
  -- The task template; parameters may hold {{scheduled_at}} placeholders.
  type text not null,
  parameters jsonb not null default '{}'::jsonb,
  priority integer not null default 0,
  -- 0: the type's default at the time of the tick.
  max_attempts integer not null default 0 check (max_attempts >= 0),
  -- null: the type's default at the time of the tick.
  timeout_ms integer check (timeout_ms > 0),
  paused boolean not null default false,
  catch_up text not null default 'skip' check (catch_up in ('skip', 'latest', 'backfill')),
  backfill_limit integer not null default 0 check (backfill_limit between 0 and 1000),
  overlap text not null default 'allow' check (overlap in ('allow', 'skip', 'cancel_previous')),
  -- The next tick to handle. Advanced in the same transaction that creates the tick's task.
  next_run_at timestamptz,
  -- The tick of the latest task this schedule created, and that task.
  last_run_at timestamptz,
  last_task_id bigint,
  -- Why the latest tick created nothing (overlap skip, invalid parameters), cleared by the next task.
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- The scheduler: due, unpaused schedules, earliest first.
create index schedules_next_run_idx on schedules (next_run_at) where not paused;

alter table tasks add column schedule_id bigint references schedules (id) on delete set null;
alter table tasks add column scheduled_at timestamptz;

-- Exactly once per tick: the guard every scheduler insert conflicts on. Also serves ListTasks
-- filtered by schedule and the "previous run still unfinished" check of the overlap policies.
create unique index tasks_schedule_tick_key on tasks (schedule_id, scheduled_at) where schedule_id is not null;

-- Any change to a schedule (created, edited, paused, its next tick advanced) wakes the scheduler
-- loop of every process, so a new or edited schedule fires on time without polling.
-- The payload must not be empty: store/listen.ts ignores empty payloads.
create function notify_schedules_changed() returns trigger language plpgsql as $$
begin
  perform pg_notify('schedules_changed', tg_op);
  return null;
end;
$$;

create trigger schedules_notify after insert or update or delete on schedules
  for each statement execute function notify_schedules_changed();

-- Overlap policies: a schedule's unfinished tasks.
create index tasks_schedule_unfinished_idx on tasks (schedule_id) where schedule_id is not null and status in ('queued', 'running', 'retrying');
