-- Expiry (issue 27): a task not started within expire_after_ms of its creation (or of its retry)
-- ends EXPIRED, a finished status. expires_at is the deadline; a claim never starts a task past it
-- (src/store/lifecycle/attempt.ts), and each worker process's expiry part (src/worker/expiry.ts)
-- records the expiry within a second of it.
alter table tasks add column expire_after_ms integer check (expire_after_ms > 0);
alter table tasks add column expires_at timestamptz;
-- A queue's default for its tasks created without one.
alter table queues add column expire_after_ms integer check (expire_after_ms > 0);

-- The expiry sweep reads the tasks that were never started and have a deadline, earliest first.
-- attempts = 0: a task that has started (RETRYING, or PAUSED after an attempt) cannot expire.
create index tasks_expiry_idx on tasks (expires_at)
  where expires_at is not null and attempts = 0 and status in ('queued', 'paused');

-- The finished statuses include 'expired' from now on (FINISHED_LIST in
-- src/store/lifecycle/states.ts): the partial indexes and the trigger that spell the list follow.
drop index tasks_finished_retention_idx;
create index tasks_finished_retention_idx on tasks (status, finished_at)
  where status in ('succeeded', 'failed', 'cancelled', 'expired');
drop index tasks_schedule_unfinished_idx;
create index tasks_schedule_unfinished_idx on tasks (schedule_id)
  where schedule_id is not null and status not in ('succeeded', 'failed', 'cancelled', 'expired');
drop trigger task_finishes_update on tasks;
create trigger task_finishes_update after update of status on tasks
  for each row when (old.status is distinct from new.status
    and new.status in ('succeeded', 'failed', 'cancelled', 'retrying', 'expired'))
  execute function task_finishes_on_update();
