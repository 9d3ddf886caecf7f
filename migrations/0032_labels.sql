-- Routing by labels (issue 26 item 3; docs/design/routing.md). A set of labels is a sorted text[]
-- of "key=value" pairs (src/labels.ts owns the rules), so "a worker has every label a task
-- requires" is `task.labels <@ worker.labels`.
--
-- tasks.labels: the labels a worker or agent must have to claim the task; null: it runs anywhere
-- (never an empty array). An unkeyed labeled task's job is filed under `run:<queue>:<type>:on`
-- (store/jobs.ts labeledRunTaskIdentifier), which only workers with labels read.
alter table tasks add column labels text[];
-- A schedule's tasks require these labels; null: none.
alter table schedules add column labels text[];
-- The labels a worker process (serve --labels) or agent (agent --labels) has; empty: none.
alter table workers add column labels text[] not null default '{}';
-- An agent token's labels: its agents may have these labels or fewer, never others; empty: any.
alter table api_tokens add column labels text[] not null default '{}';

-- Waiting labeled tasks by labels: GetTask's wait reason and ListWorkers' count of tasks no live
-- worker matches read only these rows. Partial: unlabeled tasks (the bulk) pay nothing for it.
create index tasks_labeled_waiting_idx on tasks (labels) where labels is not null and status in ('queued', 'retrying');
