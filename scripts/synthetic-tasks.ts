import { sql, type Kysely } from "kysely";
import type { Database } from "../src/store/schema.js";

/**
 * Inserts finished tasks number `first`..`last` of a synthetic history of `span` tasks spread over
 * the last 30 days, in one statement, for the scale benchmark and the query-plan tests: 90%
 * succeeded, 7% failed, 3% cancelled, types round robin (noop, shell, send_email, run_query), each
 * with its created, started and outcome history rows. Keep calls to ~100,000 tasks each.
 */
export async function insertSyntheticFinishedTasks(db: Kysely<Database>, first: number, last: number, span: number): Promise<void> {
  await sql`
    with made as (
      insert into tasks (name, type, status, attempts, max_attempts, timeout_ms, run_at, result, last_error,
                         created_at, updated_at, started_at, finished_at)
      select 'bench-' || g, (array['noop', 'shell', 'send_email', 'run_query'])[1 + g % 4],
             s.status, 1, 3, 30000, ts,
             case when s.status = 'succeeded' then '{"ok": true}'::jsonb end,
             case when s.status = 'failed' then 'exit code 1' end,
             ts, ts + interval '2 seconds', ts + interval '1 second', ts + interval '2 seconds'
      from generate_series(${first}::int, ${last}::int) g,
           lateral (select now() - interval '30 days' + (g::float8 / ${span}) * interval '30 days' as ts) t,
           lateral (select (case when g % 100 < 90 then 'succeeded' when g % 100 < 97 then 'failed' else 'cancelled' end)::task_status as status) s
      order by g
      returning id, status, created_at
    )
    insert into task_history (task_id, status, attempt, details, created_at)
    select id, h.status, h.attempt, h.details, created_at + h.after
    from made, lateral (values ('queued'::task_status, 0, 'created', interval '0'),
                               ('running'::task_status, 1, 'attempt 1 started', interval '1 second'),
                               (made.status, 1, 'attempt 1 finished', interval '2 seconds')) h(status, attempt, details, after)
  `.execute(db);
}
