-- The claim's pick of jobs (src/store/jobs.ts pickJobs) as a function whose plan does not depend on
-- how many jobs the statistics say there are.
--
-- graphile-worker's jobs table is a queue: it fills and empties, and autovacuum analyzes it
-- whenever it happens to, often nearly empty. With such statistics the planner took the claim's
-- pick as "read every available job of these task identifiers through task_service_jobs_by_task_id
-- (a bitmap scan), sort them all, keep the first few": a claim of 5 jobs read and sorted the whole
-- backlog of its identifiers (825 jobs, 2.5 ms; a million would take seconds), and a prepared
-- claim kept that plan while the statistics stayed. The same statement ran in 0.1 ms when the
-- statistics happened to be fresh (bench: 1.1 ms per claim against 6 ms, same buffers).
--
-- Here each task identifier's jobs are read in the index's order, (task_id, priority, run_at), up to
-- `n` of them, past the ones other claims hold (FOR UPDATE SKIP LOCKED, the locks kept until the
-- claim's statement commits), and the best `n` of those go back. The settings below leave the
-- planner no cheaper way than that ordered index scan whatever the statistics say. Up to `n` jobs
-- per identifier are locked, and those not picked are released when the claim commits.
create function task_pick_jobs(task_ids int[], forbidden_flags text[], n int)
returns table (id bigint, payload json, priority smallint, run_at timestamptz)
language sql volatile
-- A claim takes a handful (a process's free slots): the claim's own plan joins them to tasks by key.
rows 10
set enable_bitmapscan = off
set enable_sort = off
set enable_seqscan = off
as $$
  select j.id, j.payload, j.priority, j.run_at
  from unnest(task_ids) as want(task_id)
  cross join lateral (
    select j.id, j.payload, j.priority, j.run_at from graphile_worker._private_jobs j
    where j.task_id = want.task_id and j.is_available = true and j.run_at <= now()
      and (j.flags is null or not (j.flags ?| forbidden_flags))
    order by j.priority, j.run_at
    limit n
    for update of j skip locked) j
  order by j.priority, j.run_at
  limit n
$$;
