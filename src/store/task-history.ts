import type { Kysely } from "kysely";
import type { Database, TaskHistoryRow } from "./schema.js";

/** A task's history, oldest first. */
export async function listTaskHistory(db: Kysely<Database>, taskId: string): Promise<TaskHistoryRow[]> {
  return db.selectFrom("task_history").selectAll().where("task_id", "=", taskId).orderBy("id").execute();
}
