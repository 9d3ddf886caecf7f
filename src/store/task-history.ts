import type { Kysely } from "kysely";
import type { Database, TaskHistoryRow } from "./schema.js";

/** A task's history, oldest first; only rows after `afterId` when given. */
export async function listTaskHistory(db: Kysely<Database>, taskId: string, afterId = "0"): Promise<TaskHistoryRow[]> {
  return db.selectFrom("task_history").selectAll().where("task_id", "=", taskId).where("id", ">", afterId).orderBy("id").execute();
}
