-- Announce every new history row and output line on the task_events channel (payload: task id),
-- so a WatchTask stream on any server replica wakes up when any worker changes a task. Statement
-- level: one notification per task per statement, whatever the batch size.
create function notify_task_events() returns trigger language plpgsql as $$
begin
  perform pg_notify('task_events', task_id::text) from (select distinct task_id from new_rows) changed;
  return null;
end;
$$;

create trigger task_history_notify after insert on task_history
  referencing new table as new_rows for each statement execute function notify_task_events();

create trigger task_logs_notify after insert on task_logs
  referencing new table as new_rows for each statement execute function notify_task_events();
