-- Debounce and dedupe windows (issue 27 item 6; README "Unique while", docs/design/queues.md
-- "Unique while"): a create with unique_while is answered by an existing task of its queue and key
-- that was itself created with unique_while, while that one is unfinished or within a window since
-- it was created, instead of creating a second.

-- Created with unique_while: this task answers later such creates of its queue and key. A constant
-- default: a catalog change only, existing rows are not rewritten.
alter table tasks add column key_unique boolean not null default false;

-- Both indexes are partial on key_unique: tasks created without unique_while pay nothing for them.
-- The newest of a key's unique tasks (the window check: is it younger than the window?).
create index tasks_key_unique_idx on tasks (queue, key, id) where key_unique;
-- A key's unfinished unique tasks (the unfinished check), spelling FINISHED_LIST as 0028 does.
create index tasks_key_unique_unfinished_idx on tasks (queue, key, id)
  where key_unique and status not in ('succeeded', 'failed', 'cancelled', 'expired');

-- For each create with unique_while (in triples: qs[i], ks[i], and windows_ms[i], null for
-- "while unfinished"): the task that answers it (holder), or null when it may be created.
--
-- HAZARD, as task_key_slots' (0026): this is a VOLATILE plpgsql function so that each check runs
-- AFTER taking the key's lock, with a fresh snapshot, seeing every create of that key that
-- committed before it got the lock; the lock (transaction-scoped, advisory: a key has no row to
-- lock) is held until the create commits, so the next create of that key sees this one. Call it
-- in the create's transaction BEFORE inserting. Keys are locked in (queue, key) order, so two
-- creates locking overlapping keys cannot deadlock on them. The holder's row is locked FOR KEY
-- SHARE until the create commits: retention (which takes its rows FOR UPDATE SKIP LOCKED) passes it
-- by, so the task the create answers with cannot vanish before the create reads it.
create or replace function task_unique_holders(qs text[], ks text[], windows_ms bigint[])
  returns table (ord integer, holder bigint)
  language plpgsql volatile as $$
declare
  r record;
  newest record;
begin
  for r in select distinct u.q, u.k from unnest(qs, ks) as u(q, k) order by 1, 2 loop
    -- 0x74756e69 = 'tuni', the class of uniqueness locks ('tkey' is the key limits'); the key's hash the object.
    perform pg_advisory_xact_lock(1953853033, hashtext(r.q || chr(31) || r.k));
  end loop;
  for r in select u.q, u.k, u.w, u.i from unnest(qs, ks, windows_ms) with ordinality as u(q, k, w, i) loop
    ord := r.i - 1;
    holder := null;
    if r.w is null then
      select t.id into holder from tasks t
        where t.queue = r.q and t.key = r.k and t.key_unique and t.status not in ('succeeded', 'failed', 'cancelled', 'expired')
        order by t.id desc limit 1
        for key share of t;
    else
      -- Only the newest: ids grow with creation, so one index probe, however many the key made before.
      select t.id, t.created_at into newest from tasks t
        where t.queue = r.q and t.key = r.k and t.key_unique order by t.id desc limit 1
        for key share of t;
      if found and newest.created_at > now() - r.w * interval '1 millisecond' then
        holder := newest.id;
      end if;
    end if;
    return next;
  end loop;
end;
$$;
