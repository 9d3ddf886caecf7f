import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** One captured output line. */
export interface LogLine {
  seq: number;
  attempt: number;
  stream: "stdout" | "stderr" | "system";
  line: string;
}

/** The highest sequence number stored for a task (0 when none), so a new attempt appends after it. */
export async function lastLogSeq(db: Kysely<Database>, taskId: string): Promise<number> {
  const row = await db
    .selectFrom("task_logs")
    .select((eb) => eb.fn.max("seq").as("seq"))
    .where("task_id", "=", taskId)
    .executeTakeFirst();
  return Number(row?.seq ?? 0);
}

/** Appends a batch of lines in one statement. */
export async function appendLogLines(db: Kysely<Database>, taskId: string, lines: LogLine[]): Promise<void> {
  if (lines.length === 0) return;
  await sql`
    insert into task_logs (task_id, seq, attempt, stream, line)
    select ${taskId}::bigint, seq, attempt, stream, line
    from jsonb_to_recordset(${JSON.stringify(lines)}::jsonb) as x(seq int, attempt int, stream text, line text)
    on conflict do nothing
  `.execute(db);
}

/** A task's lines after `afterSeq`, in order. */
export async function listLogLines(db: Kysely<Database>, taskId: string, afterSeq = 0, limit = 1000): Promise<LogLine[]> {
  return db
    .selectFrom("task_logs")
    .select(["seq", "attempt", "stream", "line"])
    .where("task_id", "=", taskId)
    .where("seq", ">", afterSeq)
    .orderBy("seq")
    .limit(limit)
    .execute();
}
