-- The graphile-worker job running a task's current attempt, so the reconciler can release a dead
-- worker's lock on it.
alter table tasks add column job_id bigint;

-- Reconciler: waiting tasks whose cancellation was requested.
create index tasks_cancel_requested_idx on tasks (id) where cancel_requested_at is not null and status in ('queued', 'retrying');
