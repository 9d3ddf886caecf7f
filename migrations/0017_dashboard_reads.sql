-- Attempts that ended, per minute and outcome, for the dashboard's throughput chart
-- (GetTaskThroughput). See docs/design/dashboard.md "Overview".
--
-- Same shape as the counts of 0011: a row trigger appends one delta row when a task enters
-- succeeded, failed, cancelled or retrying (an attempt that failed and will be retried), and a
-- rollup (foldTaskFinishDeltas in src/store/task-finishes.ts) folds them into task_finishes every
-- few seconds. Appending never waits on another transaction, so concurrent finishes do not
-- serialise on a per-minute counter row; a read sums task_finishes and the unfolded deltas in one
-- statement, O(minutes x outcomes + deltas since the last fold), never a scan of tasks.
--
-- It is a trigger of its own (not a change to 0011's functions) so that migrations replacing those
-- functions (the queue column) leave this one alone.

create table task_finishes (
  minute timestamptz not null,
  status task_status not null,
  count bigint not null,
  primary key (minute, status)
);

create table task_finish_deltas (
  minute timestamptz not null,
  status task_status not null,
  delta bigint not null
);
-- Rows live seconds (appended by finishes, deleted by the rollup): vacuum it often.
alter table task_finish_deltas set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000);

create function task_finishes_on_update() returns trigger language plpgsql as $$
begin
  insert into task_finish_deltas (minute, status, delta) values (date_trunc('minute', now()), new.status, 1);
  return null;
end;
$$;

-- The WHEN clause is evaluated in C: heartbeats and the transitions into queued or running run no
-- function at all.
create trigger task_finishes_update after update of status on tasks
  for each row when (old.status is distinct from new.status
    and new.status in ('succeeded', 'failed', 'cancelled', 'retrying'))
  execute function task_finishes_on_update();

-- The last hour before this migration, from the finished tasks (one pass over tasks, once). Tasks
-- that were retried keep only their last outcome, so earlier retrying steps are not recovered.
insert into task_finishes (minute, status, count)
select date_trunc('minute', finished_at), status, count(*)
from tasks
where finished_at >= now() - interval '1 hour' and status in ('succeeded', 'failed', 'cancelled')
group by 1, 2;

-- ListTasks name_prefix: a prefix match (`name like 'abc%'`) read from this index in name order when
-- the prefix is rare, or from tasks_pkey in id order when it is common (the planner picks by the
-- statistics). text_pattern_ops, so LIKE prefixes use it whatever the database's collation. Every
-- transition already inserts into each index (status is indexed, so no transition is HOT): this
-- adds one index insert per transition. A trigram index would allow infix search at the cost of a
-- GIN insert per transition; prefix search is what an operator types ("nightly-", "import-42").
create index tasks_name_pattern_idx on tasks (name text_pattern_ops);
