-- Routing by labels (issue 26 item 3; docs/design/routing.md). A set of labels is a sorted text[]
-- of "key=value" pairs (src/labels.ts owns the rules), so "a worker has every label a task
-- requires" is `task.labels <@ worker.labels`.
--
-- tasks.labels: the labels a worker or agent must have to claim the task; null: it runs anywhere
-- (never an empty array). An unkeyed labeled task's job is filed under
-- `run:<queue>:<type>:on:<task_label_set_id(labels)>` (store/jobs.ts labeledRunTaskPrefix), one
-- identifier per label set: a claimer reads only the identifiers of the sets it has every label of.
alter table tasks add column labels text[];

-- Every label set a task has required, by its id: how a claimer finds the labeled identifiers it
-- may read (those of the sets contained in its labels) without reading the jobs of the others.
-- Written by the create statement (lifecycle/create.ts); a few rows, one per distinct set.
create table task_label_sets (
  id text primary key,
  labels text[] not null unique
);

-- A label set's id in job identifiers: 16 hex digits of the md5 of its sorted pairs. graphile-worker
-- caps an identifier at 128 characters; a collision would only make a claimer read jobs whose
-- tasks' labels the claim's own check then refuses.
create function task_label_set_id(labels text[]) returns text
  language sql immutable as $$ select left(md5(array_to_string(labels, ',')), 16) $$;
-- A schedule's tasks require these labels; null: none.
alter table schedules add column labels text[];
-- The labels a worker process (serve --labels) or agent (agent --labels) has; empty: none.
alter table workers add column labels text[] not null default '{}';
-- An agent token's labels: its agents may have these labels or fewer, never others; empty: any.
alter table api_tokens add column labels text[] not null default '{}';

-- Waiting labeled tasks by labels: GetTask's wait reason and ListWorkers' count of tasks no live
-- worker matches read only these rows. Partial: unlabeled tasks (the bulk) pay nothing for it.
create index tasks_labeled_waiting_idx on tasks (labels) where labels is not null and status in ('queued', 'retrying');
