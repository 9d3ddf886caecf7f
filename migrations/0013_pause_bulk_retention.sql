-- Pause/resume, per-task backoff and retention (issue 11, part 2). See docs/ARCHITECTURE.md
-- "Pause and resume", "Retention".
--
-- HAZARD: the migrator runs every pending migration in one transaction, and PostgreSQL refuses to
-- use an enum value added in the same transaction. Nothing here (nor in a later migration) may
-- therefore mention 'paused' outside a function body; the application uses it once this commits.
alter type task_status add value if not exists 'paused' after 'retrying';

-- A PAUSED task is either held (it was QUEUED or RETRYING: no job, worker_id null; resume goes back
-- to paused_from and enqueues its job) or stopped mid-attempt (it was RUNNING: worker_id and the
-- attempt stay, the worker keeps heartbeating it; resume goes back to RUNNING).
alter table tasks add column paused_from task_status;
alter table tasks add column paused_at timestamptz;

-- Per-task retry policy (CreateTask `backoff`); null = the worker's configured policy.
alter table tasks add column backoff_base_ms integer check (backoff_base_ms > 0);
alter table tasks add column backoff_max_ms integer check (backoff_max_ms > 0);
alter table tasks add constraint tasks_backoff_pair check ((backoff_base_ms is null) = (backoff_max_ms is null) and backoff_base_ms <= backoff_max_ms);

-- Retention: finished tasks by outcome, oldest first (the maintenance job deletes in small batches
-- from the front of each range).
create index tasks_finished_retention_idx on tasks (status, finished_at) where status in ('succeeded', 'failed', 'cancelled');

-- Overlap policies count a schedule's unfinished tasks; PAUSED is unfinished too. The predicate names
-- the finished statuses instead of the unfinished ones (see the hazard above).
drop index tasks_schedule_unfinished_idx;
create index tasks_schedule_unfinished_idx on tasks (schedule_id) where schedule_id is not null and status not in ('succeeded', 'failed', 'cancelled');
