-- Keys, concurrency per key and fairness between keys (issue 27; README "Keys: concurrency per key
-- and fair turns", docs/design/queues.md "Keys").

-- A task's key: free text naming what it competes for (a tenant, an SMTP host), set at create or
-- derived there from its queue's key_template; null: unkeyed (the default, and the old paths).
-- key_turn is the task's place in its key's round-robin (start-time fair queueing, see
-- src/store/lifecycle/create.ts): within a queue and a priority, keyed tasks are claimed in
-- turn order, so each key's n-th waiting task comes before any key's (n+1)-th. Both are nullable
-- without a default: a catalog change only, existing rows are not rewritten.
alter table tasks add column key text check (key is null or (length(key) between 1 and 200 and key !~ '[[:cntrl:]]'));
alter table tasks add column key_turn bigint;

-- Every index here is partial on `key is not null`: unkeyed tasks (the bulk) pay nothing for them.
-- The keyed claim of a queue without key limits, in turn order (and the queue's clock at create).
create index tasks_keyed_waiting_idx on tasks (queue, priority desc, key_turn, id)
  where key is not null and status in ('queued', 'retrying');
-- A key's next waiting tasks (the claim of a key-limited queue, one probe per key) and its last turn (create).
create index tasks_key_waiting_idx on tasks (queue, key, priority desc, key_turn, id)
  where key is not null and status in ('queued', 'retrying');
-- A key's RUNNING tasks, counted by its gate.
create index tasks_key_running_idx on tasks (queue, key) where key is not null and status = 'running';

-- A schedule's task template may carry the key its ticks' tasks get (null: the queue's template, or none).
alter table schedules add column key text check (key is null or (length(key) between 1 and 200 and key !~ '[[:cntrl:]]'));

alter table queues
  -- Derives the key of a task created without one: {{params.to | domain}} (src/key-template.ts).
  add column key_template text check (key_template is null or length(key_template) between 1 and 200),
  -- Most RUNNING tasks per key (each key of the queue) across every worker process; null: unlimited.
  add column key_concurrency integer check (key_concurrency is null or key_concurrency >= 0),
  -- Limits of named keys, overriding key_concurrency: {"acme": 5}.
  add column key_limits jsonb not null default '{}'::jsonb check (jsonb_typeof(key_limits) = 'object');

-- For each (queue, key) pair given (in pairs, qs[i] with ks[i]): how many more of its tasks may
-- start now (slot_free), its limit (slot_limit, null: unlimited, then slot_free is 2^31-1).
--
-- HAZARD, the same as task_queue_admits' (0012): this is a VOLATILE plpgsql function so that it
-- counts AFTER taking the key's lock, with a fresh snapshot, seeing every claim that committed
-- before it got the lock; the lock (transaction-scoped, advisory: keys have no row to lock) is
-- held until the claim commits, so the next claimer of that key sees this one. The keys are
-- locked in (queue, key) order, so two claims locking overlapping keys cannot deadlock on them.
-- A claim statement calls it once, and takes at most slot_free tasks of each key.
-- Keys without a limit take no lock.
create or replace function task_key_slots(qs text[], ks text[])
  returns table (slot_queue text, slot_key text, slot_limit integer, slot_free integer)
  language plpgsql volatile as $$
declare
  r record;
begin
  for r in select distinct u.q, u.k from unnest(qs, ks) as u(q, k) where u.k is not null order by 1, 2 loop
    slot_queue := r.q;
    slot_key := r.k;
    select coalesce((qq.key_limits ->> r.k)::int, qq.key_concurrency) into slot_limit from queues qq where qq.name = r.q;
    if slot_limit is null then
      slot_free := 2147483647;
    else
      -- 0x746b6579 = 'tkey', the class of key locks ('task' is the workers' liveness locks'); the key's hash the object.
      perform pg_advisory_xact_lock(1953195385, hashtext(r.q || chr(31) || r.k));
      slot_free := greatest(0, slot_limit - (select count(*) from tasks t where t.queue = r.q and t.key = r.k and t.status = 'running'));
    end if;
    return next;
  end loop;
end;
$$;

-- Whether one more task of key k in queue q may start now (the one-at-a-time claims: a limited
-- queue's, claimAttempt's); locks the key as task_key_slots does. An unkeyed task always may.
create or replace function task_key_admits(q text, k text) returns boolean
  language sql volatile as $$
  select k is null or coalesce((select slot_free > 0 from task_key_slots(array[q], array[k])), true)
$$;
