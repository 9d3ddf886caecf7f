-- Named queues, their settings, and what each worker process serves. See README "Queues, worker
-- capabilities and priority" and docs/design/queues.md.

-- Every task belongs to one queue (default 'default'). Names: lower-case letters, digits, '_', '-',
-- '.', starting with a letter or digit, at most 64 characters (src/api/validate.ts checks the same
-- rule, so bad input is InvalidArgument before it gets here).
alter table tasks add column if not exists queue text not null default 'default'
  check (queue ~ '^[a-z0-9][a-z0-9_.-]{0,63}$');
-- ListTasks by queue (newest first); the claim's count of RUNNING tasks in a limited queue;
-- ListQueues' oldest waiting task of a queue (both partial indexes hold only unfinished tasks).
create index if not exists tasks_queue_id_idx on tasks (queue, id desc);
create index if not exists tasks_running_queue_idx on tasks (queue) where status = 'running';
create index if not exists tasks_waiting_queue_idx on tasks (queue, id) where status in ('queued', 'retrying');

-- Settings of a queue. A queue without a row has the defaults (unlimited, not paused): a row is
-- written the first time someone changes a setting, so creating tasks never writes here.
create table queues (
  name text primary key check (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
  -- Most tasks of this queue RUNNING at once across every worker process; null = unlimited.
  concurrency integer check (concurrency is null or concurrency >= 0),
  -- No new attempt starts while set; running attempts finish.
  paused boolean not null default false,
  updated_at timestamptz not null default now()
);

-- Whether an attempt of a task in queue `q` may start now. Called from the claim's WHERE clause
-- (src/store/attempts.ts claimAttempt), once per claim.
--
-- HAZARD, why this is a VOLATILE plpgsql function and not a subquery in the claim: for a limited
-- queue it locks the queue's row and only then counts the RUNNING tasks. A subquery in the claim
-- statement would count with the statement's snapshot, taken before the lock was granted, so two
-- workers racing for the last slot would both see it free. A volatile function takes a fresh
-- snapshot for each query it runs (READ COMMITTED), so the count below sees every claim that
-- committed before this one got the lock; the lock is held until the claim commits, so the next
-- claimer sees this one. Queues without a limit take no lock (one indexed read), so unlimited
-- queues (the default) never serialise their claims.
create or replace function task_queue_admits(q text) returns boolean
  language plpgsql volatile as $$
declare
  limit_ integer;
  paused_ boolean;
begin
  select concurrency, paused into limit_, paused_ from queues where name = q;
  if not found then return true; end if;
  if paused_ then return false; end if;
  if limit_ is null then return true; end if;
  select concurrency, paused into limit_, paused_ from queues where name = q for update;
  if paused_ then return false; end if;
  if limit_ is null then return true; end if;
  return (select count(*) from tasks where queue = q and status = 'running') < limit_;
end;
$$;

-- What each worker process serves, for ListWorkers and "is any live worker serving this type?".
-- add column if not exists: the plugin SDK's registry migration may add `types` as well.
alter table workers
  add column if not exists types text[] not null default '{}',
  add column if not exists queues text[] not null default '{}',
  add column if not exists slots integer not null default 0,
  add column if not exists busy integer not null default 0,
  add column if not exists host text,
  add column if not exists pid integer;

-- Task counts get their real queue dimension (0011 counted every task under 'default', which is
-- what every existing task's queue now is, so the folded counts stay right).
create or replace function task_counts_on_insert() returns trigger language plpgsql as $$
begin
  insert into task_count_deltas (queue, type, status, delta)
  select queue, type, status, count(*) from new_rows group by queue, type, status;
  return null;
end;
$$;

create or replace function task_counts_on_delete() returns trigger language plpgsql as $$
begin
  insert into task_count_deltas (queue, type, status, delta)
  select queue, type, status, -count(*) from old_rows group by queue, type, status;
  return null;
end;
$$;

create or replace function task_counts_on_update() returns trigger language plpgsql as $$
begin
  insert into task_count_deltas (queue, type, status, delta)
  values (old.queue, old.type, old.status, -1), (new.queue, new.type, new.status, 1);
  return null;
end;
$$;

drop trigger if exists task_counts_update on tasks;
create trigger task_counts_update after update of status, type, queue on tasks
  for each row when (old.status is distinct from new.status or old.type is distinct from new.type
    or old.queue is distinct from new.queue)
  execute function task_counts_on_update();

-- Jobs are now filed under a task identifier per queue and type, 'run:<queue>:<type>' (see
-- src/worker/jobs.ts), so graphile-worker's own fetch only hands a worker what it serves. Jobs
-- written before this migration used the single identifier 'run_task': move the pending ones to
-- their new identifier, so no task waits for a job no worker fetches. (graphile-worker's schema is
-- migrated before ours, see src/store/migrate.ts.)
insert into graphile_worker._private_tasks (identifier)
select distinct 'run:' || t.queue || ':' || t.type
from graphile_worker._private_jobs j
join graphile_worker._private_tasks gt on gt.id = j.task_id and gt.identifier = 'run_task'
join tasks t on j.key = 'task:' || t.id::text
on conflict (identifier) do nothing;

update graphile_worker._private_jobs j
set task_id = nt.id,
  flags = jsonb_build_object('queue:' || t.queue, true)
from graphile_worker._private_tasks gt, tasks t, graphile_worker._private_tasks nt
where gt.id = j.task_id and gt.identifier = 'run_task'
  and j.key = 'task:' || t.id::text
  and nt.identifier = 'run:' || t.queue || ':' || t.type;
