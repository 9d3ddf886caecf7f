import { sql, type Kysely } from "kysely";
import type { Database } from "../../src/store/schema.js";

/** A task with its whole history, for consistency checks (chaos test, operators' audits). */
export interface TaskWithHistory {
  id: string;
  name: string;
  status: string;
  attempts: number;
  last_error: string | null;
  history: { status: string; attempt: number; details: string }[];
}

/** Tasks whose name starts with `prefix`, each with its history in order. */
export async function loadTasksWithHistory(db: Kysely<Database>, prefix: string): Promise<TaskWithHistory[]> {
  const { rows } = await sql<TaskWithHistory>`
    select t.id, t.name, t.status, t.attempts, t.last_error,
      coalesce((select json_agg(json_build_object('status', h.status, 'attempt', h.attempt, 'details', h.details) order by h.id)
        from task_history h where h.task_id = t.id), '[]') as history
    from tasks t where t.name like ${`${prefix}%`}
    order by t.id
  `.execute(db);
  return rows;
}
