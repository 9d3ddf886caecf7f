-- Notify only for tasks someone is watching: NOTIFY takes a global lock at commit, which cost a
-- quarter of worker throughput when every history row announced itself. Servers register the
-- tasks their WatchTask streams follow here (refreshed while watching; expired rows are ignored
-- and cleaned up by the reconciler). Unlogged: it is soft state, rebuilt by watchers.
create unlogged table task_watchers (
  task_id bigint not null,
  server_id text not null,
  expires_at timestamptz not null,
  primary key (task_id, server_id)
);

create or replace function notify_task_events() returns trigger language plpgsql as $$
begin
  perform pg_notify('task_events', changed.task_id::text)
  from (select distinct task_id from new_rows) changed
  where exists (select 1 from task_watchers w where w.task_id = changed.task_id and w.expires_at > now());
  return null;
end;
$$;
