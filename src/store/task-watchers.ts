import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** Registers (or refreshes) this server's interest in a task's events until `ttlMs` from now. */
export async function watchTasks(db: Kysely<Database>, serverId: string, taskIds: string[], ttlMs: number): Promise<void> {
  if (taskIds.length === 0) return;
  await sql`
    insert into task_watchers (task_id, server_id, expires_at)
    select unnest(${taskIds}::bigint[]), ${serverId}, now() + make_interval(secs => ${ttlMs / 1000})
    on conflict (task_id, server_id) do update set expires_at = excluded.expires_at
  `.execute(db);
}

/** Drops this server's interest in a task. */
export async function unwatchTask(db: Kysely<Database>, serverId: string, taskId: string): Promise<void> {
  await sql`delete from task_watchers where task_id = ${taskId} and server_id = ${serverId}`.execute(db);
}

/** Removes registrations whose server stopped refreshing them (it crashed, say). */
export async function deleteExpiredWatchers(db: Kysely<Database>): Promise<number> {
  const result = await sql`delete from task_watchers where expires_at < now()`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
