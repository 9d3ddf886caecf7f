-- Fast rescue (issue 17): each worker process holds a session-level advisory lock
-- pg_advisory_lock(1952543595 /* 'task' */, lock_key) on a connection of its own, taken when it
-- registers and again after every reconnection (locked_at). PostgreSQL releases the lock when the
-- process's socket closes, so a reconciler that finds the lock of a worker free (and taken since the
-- last PostgreSQL start) knows the process is gone without waiting for its lease to run out.
create sequence worker_lock_keys as integer minvalue 1 cycle;
alter table workers
  add column lock_key integer,
  add column locked_at timestamptz;

-- Poison tasks: how many attempts in a row lost their worker (killed, out of memory). Reset when a
-- worker records an outcome; the task fails when it reaches max_attempts ("worker lost on each of
-- N attempts"), while a lost attempt short of that is retried even past max_attempts, since it was
-- not the task's failure (it may have shared a worker with the task that killed it).
alter table tasks add column lost_attempts integer not null default 0;
