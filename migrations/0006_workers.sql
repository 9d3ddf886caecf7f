-- Live worker processes. Each refreshes its row with the same statement as its task heartbeats and
-- lists the graphile-worker ids its jobs are locked under (the pool's id for its local queue, and
-- each slot's id), so the reconciler can release every lock of a process that stopped beating,
-- including jobs it had fetched but not started, instead of leaving them locked for graphile-worker's
-- four-hour timeout.
create table workers (
  id text primary key,
  graphile_ids text[] not null default '{}',
  started_at timestamptz not null default now(),
  heartbeat_at timestamptz not null default now()
);
