-- An index on graphile-worker's jobs by task identifier, for fetches that take only some
-- identifiers while many other jobs wait.
--
-- Task attempts are claimed by the workers' own fetch loop (src/worker/claim-loop.ts); graphile-worker's
-- worker runs only the cron jobs (reconcile, retention). Its fetch (get_jobs) filters on task_id and
-- sorts by priority and due time, and graphile-worker's own indexes lead with priority: with a
-- backlog of a million run_task jobs, each fetch for the two cron identifiers read every one of
-- them (about 7 ms per 20,000), at every poll and at every jobs:insert notification, in every
-- worker process. The same holds for a worker that serves some queues or types while others have a
-- backlog. With this index such a fetch reads only the jobs of its identifiers.
create index if not exists task_service_jobs_by_task_id
  on graphile_worker._private_jobs (task_id, priority, run_at)
  where is_available = true;
