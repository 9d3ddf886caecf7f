-- Heartbeats as HOT updates (docs/design/hot-path.md, "Heartbeats are HOT updates").
--
-- A heartbeat (src/store/lifecycle/attempt.ts) sets only heartbeat_at, every TASK_HEARTBEAT_MS per
-- running attempt, and fires no trigger (the count and finish triggers are `update of status, type,
-- queue` and `update of status`). PostgreSQL writes it as a HOT update (a new row version on the
-- same page, no index entry) when no index covers a changed column and the page has room. Until
-- this migration tasks_running_heartbeat_idx indexed heartbeat_at, so every heartbeat inserted an
-- entry into each of the table's 13 indexes.
--
-- The lease check (rescueLostAttempts) reads attempts in progress, RUNNING or PAUSED mid-attempt
-- (IN_ATTEMPT, src/store/lifecycle/states.ts), and applies the heartbeat filter to the few rows it
-- finds: this partial index holds those rows under a key a heartbeat does not change. A task has a
-- worker exactly while an attempt is in progress (the claim sets it, the attempt's end clears it),
-- so the predicate is IN_ATTEMPT's consequence without the literal 'paused': a database migrating
-- from before 0013 adds that enum value in this same transaction, where it cannot be used yet.
drop index if exists tasks_running_heartbeat_idx;
create index if not exists tasks_in_attempt_idx on tasks (worker_id)
  where status = 'running' or worker_id is not null;

-- Room on each page for the new versions of its running rows: one heartbeat statement renews all of
-- a process's attempts at once, and attempts claimed together share pages. scripts/hot-updates.ts:
-- 77 % of a drain's heartbeats HOT at fillfactor 90, 92 % at 80, 96 % at 70. It applies to pages
-- filled from now on; pages written before keep what they hold until VACUUM FULL or CLUSTER
-- rewrites them (a running row on a full page moves to a page with room on its next update, and is
-- HOT from then on; finished rows are not updated again).
alter table tasks set (fillfactor = 70);
