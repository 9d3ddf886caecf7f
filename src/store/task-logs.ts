import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** Which stream a line came from. */
export type LogStream = "stdout" | "stderr" | "system";

/** One captured output line. */
export interface LogLine {
  seq: number;
  attempt: number;
  stream: LogStream;
  line: string;
}

/** A stored line, with when it was stored. */
export type StoredLogLine = LogLine & { created_at: Date };

/** A run of consecutive lines of one attempt, as one task_logs row stores them. */
export interface LogChunk {
  firstSeq: number;
  attempt: number;
  lines: Pick<LogLine, "stream" | "line">[];
}

/** What a NUL character becomes: PostgreSQL text (and jsonb) cannot hold U+0000. */
export const NUL_REPLACEMENT = "\u2400";
/** What a newline inside one line becomes: a chunk's lines are stored joined by LF. */
export const NEWLINE_REPLACEMENT = "\u2424";

const STREAM_CODE = { stdout: "o", stderr: "e", system: "s" } as const;
const CODE_STREAM: Record<string, LogStream> = { o: "stdout", e: "stderr", s: "system" };

/** The JSON one chunk travels in (lines are already storable: no NUL, no lone surrogate). */
function chunkJson(chunk: LogChunk) {
  let streams = "";
  for (const l of chunk.lines) streams += STREAM_CODE[l.stream];
  let text = "";
  for (let i = 0; i < chunk.lines.length; i++) {
    const line = chunk.lines[i]!.line;
    text += (i === 0 ? "" : "\n") + (line.includes("\n") ? line.replaceAll("\n", NEWLINE_REPLACEMENT) : line);
  }
  return { f: chunk.firstSeq, l: chunk.firstSeq + chunk.lines.length - 1, a: chunk.attempt, s: streams, x: text };
}

/**
 * Stores chunks (one statement, one row per chunk). A chunk that ends on a line number already
 * stored is skipped, so replaying a write is harmless.
 */
export async function insertLogChunks(db: Kysely<Database>, taskId: string, chunks: LogChunk[]): Promise<void> {
  const rows = chunks.filter((c) => c.lines.length > 0).map(chunkJson);
  if (rows.length === 0) return;
  // Arrays of a few elements (one per chunk), each line text one value: no per-line encoding.
  await sql`
    insert into task_logs (task_id, first_seq, last_seq, attempt, streams, lines)
    select ${taskId}::bigint, x.f, x.l, x.a, x.s, x.x
    from unnest(${rows.map((r) => r.f)}::int[], ${rows.map((r) => r.l)}::int[], ${rows.map((r) => r.a)}::int[], ${rows.map((r) => r.s)}::text[], ${rows.map((r) => r.x)}::text[]) as x(f, l, a, s, x)
    on conflict do nothing
  `.execute(db);
}

/**
 * Replaces an attempt's stored lines after line `afterSeq` with `chunks`, in one transaction: how a
 * capped attempt rewrites its marker and kept tail as the tail moves on.
 */
export async function replaceLogTail(db: Kysely<Database>, taskId: string, attempt: number, afterSeq: number, chunks: LogChunk[]): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.deleteFrom("task_logs").where("task_id", "=", taskId).where("attempt", "=", attempt).where("first_seq", ">", afterSeq).execute();
    await insertLogChunks(tx, taskId, chunks);
  });
}

/** The highest line number a task has stored (0 for none). */
export async function lastLogSeq(db: Kysely<Database>, taskId: string): Promise<number> {
  const row = await db.selectFrom("task_logs").select("last_seq").where("task_id", "=", taskId).orderBy("last_seq", "desc").limit(1).executeTakeFirst();
  return row?.last_seq ?? 0;
}

/**
 * Appends lines after whatever the task already stored (numbered in SQL, no read first), as
 * chunks of up to 1,000 lines. NUL becomes ␀. For tests and tools that write output directly;
 * workers write through TaskLogSink, which caps and chunks as it goes.
 */
export async function appendLogLines(db: Kysely<Database>, taskId: string, attempt: number, lines: Pick<LogLine, "stream" | "line">[]): Promise<void> {
  const base = await lastLogSeq(db, taskId);
  const chunks: LogChunk[] = [];
  for (let i = 0; i < lines.length; i += 1000) {
    chunks.push({
      firstSeq: base + i + 1,
      attempt,
      lines: lines.slice(i, i + 1000).map((l) => ({ stream: l.stream, line: l.line.replaceAll("\0", NUL_REPLACEMENT) })),
    });
  }
  await insertLogChunks(db, taskId, chunks);
}

interface ChunkRow {
  first_seq: number;
  last_seq: number;
  attempt: number;
  streams: string;
  lines: string;
  created_at: Date;
}

/** Which lines to return. */
export interface LogFilter {
  attempt?: number;
  stream?: LogStream;
}

function* unpack(row: ChunkRow, filter: LogFilter): Generator<StoredLogLine> {
  const lines = row.lines.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const stream = CODE_STREAM[row.streams[i]!] ?? "system";
    if (filter.stream && stream !== filter.stream) continue;
    yield { seq: row.first_seq + i, attempt: row.attempt, stream, line: lines[i]!, created_at: row.created_at };
  }
}

/** Chunks read per query while scanning (a chunk holds up to ~1,000 lines): few at first, more as a scan goes on. */
const CHUNKS_PER_READ = 16;
const FIRST_READ = 2;

function chunkQuery(db: Kysely<Database>, taskId: string, filter: LogFilter) {
  let q = db.selectFrom("task_logs").select(["first_seq", "last_seq", "attempt", "streams", "lines", "created_at"]).where("task_id", "=", taskId);
  if (filter.attempt) q = q.where("attempt", "=", filter.attempt);
  return q;
}

/**
 * A task's lines numbered `from` to `to` (inclusive), in order, at most `limit` of them: an index
 * range over the chunks ending at or after `from`, read a few chunks at a time.
 */
export async function readLogRange(db: Kysely<Database>, taskId: string, from: number, to: number, limit: number, filter: LogFilter = {}): Promise<StoredLogLine[]> {
  const out: StoredLogLine[] = [];
  let after = from - 1;
  for (let batch = to - from < 500 && !filter.stream ? 1 : FIRST_READ; ; batch = Math.min(CHUNKS_PER_READ, batch * 2)) {
    const rows = (await chunkQuery(db, taskId, filter).where("last_seq", ">", after).orderBy("last_seq").limit(batch).execute()) as ChunkRow[];
    for (const row of rows) {
      if (row.first_seq > to) return out;
      for (const line of unpack(row, filter)) {
        if (line.seq < from || line.seq > to) continue;
        out.push(line);
        if (out.length >= limit) return out;
      }
      after = row.last_seq;
    }
    if (rows.length < batch) return out;
  }
}

/** A task's lines after `afterSeq`, in order (follow and WatchTask read this way). */
export function listLogLines(db: Kysely<Database>, taskId: string, afterSeq = 0, limit = 1000, filter: LogFilter = {}): Promise<StoredLogLine[]> {
  return readLogRange(db, taskId, afterSeq + 1, Number.MAX_SAFE_INTEGER, limit, filter);
}

/** A task's last `count` lines (matching `filter`), in order: read backwards from the newest chunk. */
export async function readLogTail(db: Kysely<Database>, taskId: string, count: number, filter: LogFilter = {}): Promise<StoredLogLine[]> {
  const chunks: StoredLogLine[][] = [];
  let have = 0;
  // Line numbers are int4: start just past the largest.
  let before = 2_147_483_648;
  for (let batch = count <= 500 ? 1 : FIRST_READ; have < count; batch = Math.min(CHUNKS_PER_READ, batch * 2)) {
    const rows = (await chunkQuery(db, taskId, filter).where("last_seq", "<", sql<number>`${before}::bigint`).orderBy("last_seq", "desc").limit(batch).execute()) as ChunkRow[];
    for (const row of rows) {
      const lines = [...unpack(row, filter)];
      chunks.push(lines);
      have += lines.length;
      before = row.first_seq;
      if (have >= count) break;
    }
    if (rows.length < batch) break;
  }
  return chunks.reverse().flat().slice(-count);
}

/** Line counts of a task's output (under `filter`). */
export interface LogCounts {
  /** The highest line number stored: lines the task wrote, counting those a cap dropped. */
  lastSeq: number;
  /** Lines stored (matching the filter). */
  stored: number;
}

/** Counts a task's lines: reads only the stream codes of its chunks, never the lines. */
export async function countLogLines(db: Kysely<Database>, taskId: string, filter: LogFilter = {}): Promise<LogCounts> {
  const code = filter.stream ? STREAM_CODE[filter.stream] : null;
  const { rows } = await sql<{ last_seq: number | null; stored: string | null }>`
    select max(last_seq) as last_seq,
           sum(${code === null ? sql`last_seq - first_seq + 1` : sql`length(streams) - length(replace(streams, ${code}, ''))`}) as stored
    from task_logs where task_id = ${taskId} ${filter.attempt ? sql`and attempt = ${filter.attempt}` : sql``}
  `.execute(db);
  return { lastSeq: rows[0]?.last_seq ?? 0, stored: Number(rows[0]?.stored ?? 0) };
}

/** Streams every stored line of a task in order, a few chunks at a time (the download). */
export async function* streamLogLines(db: Kysely<Database>, taskId: string, afterSeq = 0, filter: LogFilter = {}): AsyncGenerator<StoredLogLine[]> {
  let after = afterSeq;
  for (;;) {
    const rows = (await chunkQuery(db, taskId, filter).where("last_seq", ">", after).orderBy("last_seq").limit(CHUNKS_PER_READ).execute()) as ChunkRow[];
    const lines: StoredLogLine[] = [];
    for (const row of rows) {
      for (const line of unpack(row, filter)) if (line.seq > afterSeq) lines.push(line);
      after = row.last_seq;
    }
    if (lines.length > 0) yield lines;
    if (rows.length < CHUNKS_PER_READ) return;
  }
}
