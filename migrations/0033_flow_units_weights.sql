-- Flow control, the claim's half of issue 27 items 3 and 4 (docs/design/queues.md "Units",
-- "Weighted turns", "Aging of keyed tasks"): units a task takes from its rate limit, a weight per
-- key, and the age keyed tasks earn while waiting.

-- Units of its rate limit a task takes when it starts (1 to 1,000,000, the largest burst a limit
-- may have). A constant default: a catalog change, no row is rewritten.
alter table tasks add column units integer not null default 1 check (units between 1 and 1000000);

-- What a keyed task has aged while waiting (the reconcile pass, src/store/jobs.ts ageKeyedTasks):
-- the keyed claims order by priority + age_boost, as graphile-worker's job priority carries the
-- age of an unkeyed task. Only improving; 0 at create.
alter table tasks add column age_boost integer not null default 0 check (age_boost >= 0);

-- Weights of named keys (1 to 1000; a key not named weighs 1): a key of weight w takes turns w
-- times as often as a key of weight 1 while both have tasks waiting.
alter table queues add column key_weights jsonb not null default '{}'::jsonb check (jsonb_typeof(key_weights) = 'object');

-- Turns are now weighted: a key of weight w steps round(1000 / w) turns per task (weight 1: 1000),
-- so the turns of tasks already waiting are scaled to the new unit, or a new key would take 1000
-- of an old key's turns per task.
update tasks set key_turn = key_turn * 1000 where key_turn is not null and key is not null and status in ('queued', 'retrying');

-- The keyed indexes order by the effective priority (priority + age_boost), the claim's order; the
-- create's turn clock reads them at the same level. Same names, same partial predicates.
drop index tasks_keyed_waiting_idx;
create index tasks_keyed_waiting_idx on tasks (queue, (priority + age_boost) desc, key_turn, id)
  where key is not null and status in ('queued', 'retrying');
drop index tasks_key_waiting_idx;
create index tasks_key_waiting_idx on tasks (queue, key, (priority + age_boost) desc, key_turn, id)
  where key is not null and status in ('queued', 'retrying');

-- Takes `units` units of limit n's bucket for key k if it holds that many now; false: not enough
-- (nothing changed, the bucket keeps filling, so a task needing more than the others waits for its
-- units rather than being passed by smaller ones: the claim does not try the next task instead).
-- HAZARD as task_rate_take(n, k) in 0031: VOLATILE plpgsql, locks the bucket row before reading it.
create or replace function task_rate_take(n text, k text, units integer) returns boolean
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
  if tokens_now < units then return false; end if;
  update rate_limit_buckets set tokens = tokens_now - units, refreshed_at = t where limit_name = n and key = bkey;
  return true;
end;
$$;

-- One unit: 0031's callers.
create or replace function task_rate_take(n text, k text) returns boolean
  language sql volatile as $$ select task_rate_take(n, k, 1) $$;

-- Units in limit n's bucket for key k now, and ms until it holds `units` (0 when it does; null when
-- it never can: more than the burst). Read-only, as task_rate_peek(n, k).
create or replace function task_rate_peek(n text, k text, units integer, out tokens double precision, out next_unit_ms double precision)
  language sql stable as $$
  with l as (select * from rate_limits where name = n),
  b as (
    select least(l.burst::double precision, coalesce(bb.tokens + greatest(0, extract(epoch from clock_timestamp() - bb.refreshed_at) * 1000) * l.rate / l.period_ms, l.burst)) as tokens,
      l.rate::double precision / l.period_ms as per_ms, l.burst
    from l left join rate_limit_buckets bb on bb.limit_name = l.name and bb.key = case when l.per_key then coalesce(k, '') else '' end)
  select tokens, case when units > burst then null when tokens >= units then 0 else (units - tokens) / per_ms end from b
$$;
