-- tasks.job_id (0002) named the graphile-worker job running a task's attempt, so the reconciler
-- could release a dead worker's lock on it. Since the claim statement takes and deletes the job
-- (src/store/lifecycle/attempt.ts claimNextAttempts), the task row alone owns the attempt and
-- nothing writes or reads this column. Dropping it only marks it dropped (no table rewrite): rows
-- written before keep its null bit until they are next updated or the table is rewritten.
alter table tasks drop column if exists job_id;
