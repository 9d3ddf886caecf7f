import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** One captured output line. */
export interface LogLine {
  seq: number;
  attempt: number;
  stream: "stdout" | "stderr" | "system";
  line: string;
}

/** A stored line, with when it was stored. */
export type StoredLogLine = LogLine & { created_at: Date };

/** What a NUL character becomes: PostgreSQL text (and jsonb) cannot hold U+0000. */
export const NUL_REPLACEMENT = "\u2400";

/**
 * Appends a batch of an attempt's lines after whatever the task already stored, numbering them in
 * SQL (no read first), keeping at most `cap` lines per task and writing one truncation marker at
 * seq cap+1 the first time the cap is passed. NUL characters, which PostgreSQL cannot store (and
 * which would fail the whole batch), are replaced with ␀. Returns how many of the lines were kept.
 */
export async function appendLogLines(
  db: Kysely<Database>,
  taskId: string,
  attempt: number,
  lines: Pick<LogLine, "stream" | "line">[],
  cap: number,
): Promise<number> {
  if (lines.length === 0) return 0;
  const json = JSON.stringify(lines.map((l, i) => ({ i: i + 1, stream: l.stream, line: l.line.replaceAll("\0", NUL_REPLACEMENT) })));
  const { rows } = await sql<{ seq: number }>`
    with base as (
      select coalesce(max(seq), 0) as m from task_logs where task_id = ${taskId}
    ),
    numbered as (
      select base.m + x.i as seq, x.stream, x.line
      from base, jsonb_to_recordset(${json}::jsonb) as x(i int, stream text, line text)
    ),
    kept as (
      select seq, stream, line from numbered where seq <= ${cap}
      union all
      (select ${cap}::int + 1, 'system', ${`[output truncated: more than ${cap} lines]`} from numbered where seq > ${cap} limit 1)
    )
    insert into task_logs (task_id, seq, attempt, stream, line)
    select ${taskId}::bigint, seq, ${attempt}, stream, line from kept
    on conflict do nothing
    returning seq
  `.execute(db);
  return rows.filter((r) => r.seq <= cap).length;
}

/** A task's lines after `afterSeq`, in order. */
export async function listLogLines(db: Kysely<Database>, taskId: string, afterSeq = 0, limit = 1000): Promise<StoredLogLine[]> {
  return db
    .selectFrom("task_logs")
    .select(["seq", "attempt", "stream", "line", "created_at"])
    .where("task_id", "=", taskId)
    .where("seq", ">", afterSeq)
    .orderBy("seq")
    .limit(limit)
    .execute();
}
