-- Named rate limits (issue 27 item 3; README "Rate limits", docs/design/queues.md "Rate limits").
-- A limit names ONE scope: a queue (every task of it) or a task type (every task of it, in any
-- queue). Each task started in its scope takes one unit from a token bucket that holds at most
-- `burst` units and gains `rate` units per `period_ms`: over any window of length W, at most
-- burst + rate * W / period_ms tasks start (rate + burst per period).
create table rate_limits (
  name text primary key check (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
  rate integer not null check (rate between 1 and 1000000),
  period_ms integer not null check (period_ms between 1000 and 86400000),
  burst integer not null check (burst between 1 and 1000000),
  -- One bucket per task key (tasks.key; unkeyed tasks share the bucket of key '').
  per_key boolean not null default false,
  queue text,
  task_type text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check ((queue is null) <> (task_type is null))
);
-- One limit per scope: a task is under at most one limit of each kind, and the claim looks it up by scope.
create unique index rate_limits_queue_idx on rate_limits (queue) where queue is not null;
create unique index rate_limits_type_idx on rate_limits (task_type) where task_type is not null;

-- A bucket's state: tokens at refreshed_at (refilled lazily by whoever reads it under its lock).
create table rate_limit_buckets (
  limit_name text not null references rate_limits (name) on delete cascade,
  key text not null,
  tokens double precision not null,
  refreshed_at timestamptz not null,
  primary key (limit_name, key)
);

-- The limit a task of (q, ty) is under: its queue's, else its type's (a task under both takes
-- units from the queue's only: one limit per task keeps the claim to one bucket lock).
create or replace function task_rate_limit_of(q text, ty text) returns text
  language sql stable as $$
  select coalesce((select name from rate_limits where queue = q), (select name from rate_limits where task_type = ty))
$$;

-- Takes one unit of limit n's bucket for key k, if it has one now; false: none (nothing changed).
--
-- HAZARD, as task_queue_admits' (0012): VOLATILE plpgsql, so it reads the bucket AFTER locking its
-- row (FOR UPDATE), with a fresh snapshot: a claim racing for the last unit waits for the other's
-- commit and then sees the unit gone. The refill uses clock_timestamp() (not now(), the start of
-- a transaction that may have waited for the lock). A claim statement calls it for ONE task.
create or replace function task_rate_take(n text, k text) returns boolean
  language plpgsql volatile as $$
declare
  l rate_limits;
  bkey text;
  b rate_limit_buckets;
  t timestamptz := clock_timestamp();
  tokens_now double precision;
begin
  if n is null then return true; end if;
  select * into l from rate_limits where name = n;
  if not found then return true; end if;
  bkey := case when l.per_key then coalesce(k, '') else '' end;
  insert into rate_limit_buckets (limit_name, key, tokens, refreshed_at) values (n, bkey, l.burst, t) on conflict do nothing;
  select * into b from rate_limit_buckets where limit_name = n and key = bkey for update;
  t := clock_timestamp();
  tokens_now := least(l.burst::double precision, b.tokens + greatest(0, extract(epoch from t - b.refreshed_at) * 1000) * l.rate / l.period_ms);
  if tokens_now < 1 then return false; end if;
  update rate_limit_buckets set tokens = tokens_now - 1, refreshed_at = t where limit_name = n and key = bkey;
  return true;
end;
$$;

-- Units in limit n's bucket for key k now, and ms until the next whole unit (0 when one is there).
-- Read-only (no lock): for `limit list`, a waiting task's wait_reason and the worker's wake time.
create or replace function task_rate_peek(n text, k text, out tokens double precision, out next_unit_ms double precision)
  language sql stable as $$
  with l as (select * from rate_limits where name = n),
  b as (
    select least(l.burst::double precision, coalesce(bb.tokens + greatest(0, extract(epoch from clock_timestamp() - bb.refreshed_at) * 1000) * l.rate / l.period_ms, l.burst)) as tokens,
      l.rate::double precision / l.period_ms as per_ms
    from l left join rate_limit_buckets bb on bb.limit_name = l.name and bb.key = case when l.per_key then coalesce(k, '') else '' end)
  select tokens, case when tokens >= 1 then 0 else (1 - tokens) / per_ms end from b
$$;
