-- Progress of a task's current attempt (issue 29 part 1), kept apart from `tasks` so that frequent
-- reports never touch the task row (its updates, indexes and history): one narrow row per task,
-- overwritten by the worker at most about once a second per task (src/worker/progress.ts).
-- first_fraction and first_at are the attempt's first report: the rate (and from it the time left)
-- is the average since then, which readers compute (src/api/convert.ts).
create table task_progress (
  task_id bigint primary key references tasks (id) on delete cascade,
  attempt integer not null,
  fraction real not null check (fraction >= 0 and fraction <= 1),
  message text not null default '',
  first_fraction real not null,
  first_at timestamptz not null,
  updated_at timestamptz not null
);

-- WatchTasks reads the reports since its last poll.
create index task_progress_updated_idx on task_progress (updated_at);

-- WatchTask streams of a task are woken when its progress changes (only if someone watches it:
-- see 0005). Transition tables allow one event per trigger, and an upsert fires either.
create trigger task_progress_insert_notify after insert on task_progress
  referencing new table as new_rows for each statement execute function notify_task_events();
create trigger task_progress_update_notify after update on task_progress
  referencing new table as new_rows for each statement execute function notify_task_events();
