-- Task counts per (queue, type, status) without counting the tasks table. See
-- docs/design/reads-at-scale.md "Counts".
--
-- Every change to tasks appends signed deltas to task_count_deltas (append-only: no row is ever
-- updated by a transition, so concurrent transitions never wait on a shared counter row). A rollup
-- (foldTaskCountDeltas in src/store/task-counts.ts) moves them into task_counts every few seconds.
-- A read sums task_counts and the unfolded deltas in one statement, so it is exact at its snapshot,
-- exactly like count(*) would be, and costs O(groups + deltas since the last fold).
--
-- queue: tasks have no queue yet; every task counts under 'default'. When tasks gain a queue
-- column, the trigger functions below take it from the row instead of the constant.

create table task_counts (
  queue text not null,
  type text not null,
  status task_status not null,
  count bigint not null,
  primary key (queue, type, status)
);

create table task_count_deltas (
  queue text not null,
  type text not null,
  status task_status not null,
  delta bigint not null
);
-- Rows live seconds (inserted by transitions, deleted by the rollup): vacuum it often so reads that
-- scan it stay small.
alter table task_count_deltas set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000);

-- Inserts and deletes are statement-level over the transition table: a CreateTasks batch of 500
-- or a retention delete of 10,000 rows appends one row per group, not one per task.
create function task_counts_on_insert() returns trigger language plpgsql as $$
begin
  insert into task_count_deltas (queue, type, status, delta)
  select 'default', type, status, count(*) from new_rows group by type, status;
  return null;
end;
$$;

create function task_counts_on_delete() returns trigger language plpgsql as $$
begin
  insert into task_count_deltas (queue, type, status, delta)
  select 'default', type, status, -count(*) from old_rows group by type, status;
  return null;
end;
$$;

-- Updates are row-level with a WHEN clause: a transition updates one row, and the many updates
-- that change no status (heartbeats, cancel requests) are filtered before any function runs.
-- A statement-level update trigger cannot have that filter and would copy every updated row into
-- transition tables.
create function task_counts_on_update() returns trigger language plpgsql as $$
begin
  insert into task_count_deltas (queue, type, status, delta)
  values ('default', old.type, old.status, -1), ('default', new.type, new.status, 1);
  return null;
end;
$$;

create function task_counts_on_truncate() returns trigger language plpgsql as $$
begin
  delete from task_count_deltas;
  delete from task_counts;
  return null;
end;
$$;

create trigger task_counts_insert after insert on tasks
  referencing new table as new_rows for each statement execute function task_counts_on_insert();
create trigger task_counts_delete after delete on tasks
  referencing old table as old_rows for each statement execute function task_counts_on_delete();
create trigger task_counts_update after update of status, type on tasks
  for each row when (old.status is distinct from new.status or old.type is distinct from new.type)
  execute function task_counts_on_update();
create trigger task_counts_truncate after truncate on tasks
  for each statement execute function task_counts_on_truncate();

-- The starting point. Creating the triggers above took a lock that blocks writes to tasks until
-- this migration commits, so this count and the deltas that follow it neither miss nor repeat a
-- change.
insert into task_counts (queue, type, status, count)
select 'default', type, status, count(*) from tasks group by type, status;
