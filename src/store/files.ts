/**
 * Files in and out of tasks (migration 0025): inputs uploaded before their task and outputs an
 * attempt made. Each file is a task_files row, invisible until `complete`, and its bytes, which go
 * through FileBytes: PostgreSQL chunks (task_file_chunks) here; an object store would implement
 * the same interface and keep only the row here. Neither side ever holds a whole file in memory.
 */
import { createHash, randomBytes } from "node:crypto";
import { sql, type Kysely } from "kysely";
import { FileTooLargeError, InvalidArgumentError } from "../errors.js";
import type { Database, TaskStatus } from "./schema.js";

/** Bytes per stored chunk: large enough that a 50 MB file is 50 rows, small enough to hold in memory. */
export const CHUNK_BYTES = 1024 * 1024;
/** Chunks read per statement when a file is streamed out. */
const CHUNKS_PER_READ = 4;

/** Whether a file went into a task (an input) or came out of an attempt (an output, an artifact). */
export type FileDirection = "in" | "out";

/** A complete file as listings show it. */
export interface TaskFile {
  id: string;
  taskId: string;
  direction: FileDirection;
  /** The attempt that made an output; 0 for inputs. */
  attempt: number;
  name: string;
  size: number;
  sha256: string;
  createdAt: Date;
}

/** The caps' defaults (TASK_FILES_MAX_TASK_BYTES, TASK_FILES_MAX_TOTAL_BYTES), for processes built without a full Config. */
export const DEFAULT_FILE_CAPS: FileCaps = { perTaskBytes: 1024 * 1024 * 1024, totalBytes: 50 * 1024 * 1024 * 1024 };
/** TASK_UPLOAD_TTL_MS's default. */
export const DEFAULT_UPLOAD_TTL_MS = 3_600_000;

/** The caps a write is held to. */
export interface FileCaps {
  /** Bytes one task's files may hold (its inputs, and each attempt's outputs). */
  perTaskBytes: number;
  /** Bytes every stored file together may hold. */
  totalBytes: number;
}

/** How many bytes a write may take, and the cap that sets it (named in the error beyond it). */
export interface WriteLimit {
  bytes: number;
  cap: FileTooLargeError["cap"];
  /** The cap's configured size (the limit may be less: what is left of it). */
  capBytes: number;
}

/** The tighter of what is left of the per-task cap and of the total cap. */
function writeLimit(caps: FileCaps, perTaskLeft: number, totalLeft: number): WriteLimit {
  return totalLeft < perTaskLeft
    ? { bytes: Math.max(0, totalLeft), cap: "total", capBytes: caps.totalBytes }
    : { bytes: Math.max(0, perTaskLeft), cap: "per-task", capBytes: caps.perTaskBytes };
}

/**
 * Where a file's bytes live. `write` stores a stream under a file id, stopping with
 * FileTooLargeError once more than `maxBytes` came (what was written stays invisible with the
 * incomplete row, and goes with it); `read` streams them back in order.
 */
export interface FileBytes {
  write(fileId: string, name: string, body: AsyncIterable<Uint8Array>, limit: WriteLimit): Promise<{ size: number; sha256: string }>;
  read(fileId: string): AsyncIterable<Buffer>;
}

/** FileBytes in task_file_chunks: 1 MiB rows, written as they fill, read a few at a time. */
export function postgresFileBytes(db: Kysely<Database>): FileBytes {
  return {
    async write(fileId, name, body, limit) {
      const hash = createHash("sha256");
      let size = 0;
      let seq = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (pendingBytes === 0) return;
        const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        await sql`insert into task_file_chunks (file_id, seq, data) values (${fileId}, ${++seq}, ${data})`.execute(db);
      };
      // Iterating a stream asks for the next piece only when this one is handled: the writer's
      // pace (the database's) holds the sender back, so at most one chunk is in memory.
      for await (const piece of body) {
        const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece);
        size += buf.length;
        if (size > limit.bytes) throw new FileTooLargeError(name, limit.cap, limit.capBytes);
        hash.update(buf);
        let offset = 0;
        while (offset < buf.length) {
          const take = Math.min(CHUNK_BYTES - pendingBytes, buf.length - offset);
          pending.push(buf.subarray(offset, offset + take));
          pendingBytes += take;
          offset += take;
          if (pendingBytes === CHUNK_BYTES) await flush();
        }
      }
      await flush();
      return { size, sha256: hash.digest("hex") };
    },
    async *read(fileId) {
      let after = 0;
      for (;;) {
        const { rows } = await sql<{ seq: number; data: Buffer }>`
          select seq, data from task_file_chunks where file_id = ${fileId} and seq > ${after} order by seq limit ${CHUNKS_PER_READ}
        `.execute(db);
        for (const row of rows) {
          after = row.seq;
          yield row.data;
        }
        if (rows.length < CHUNKS_PER_READ) return;
      }
    },
  };
}

interface FileRow {
  id: string;
  task_id: string | null;
  direction: FileDirection;
  attempt: number;
  name: string;
  size: string;
  sha256: string | null;
  created_at: Date;
}

function toTaskFile(row: FileRow): TaskFile {
  return { id: row.id, taskId: row.task_id ?? "", direction: row.direction, attempt: row.attempt, name: row.name, size: Number(row.size), sha256: row.sha256 ?? "", createdAt: row.created_at };
}

/** A file name: one path segment, printable, as a shell task finds it in its directory. */
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** The rule FILE_NAME checks, for messages. */
export const FILE_NAME_RULE = "1-128 characters: letters, digits, '_', '.', '-', not starting with '.' or '-'";

/** Whether `name` may name a task's file (inputs and outputs alike). */
export function isFileName(name: string): boolean {
  return FILE_NAME.test(name);
}

/** Bytes held by complete files and by files being written (their size so far is counted at the end). */
export async function storedBytes(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ n: string | null }>`select sum(size) as n from task_files`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Marks files complete (visible) with their size and hash, all together. */
async function completeFiles(db: Kysely<Database>, files: { id: string; size: number; sha256: string }[]): Promise<void> {
  if (files.length === 0) return;
  const result = await sql`
    update task_files f set complete = true, size = v.size, sha256 = v.sha256
    from unnest(${files.map((f) => f.id)}::bigint[], ${files.map((f) => f.size)}::bigint[], ${files.map((f) => f.sha256)}::text[]) as v (id, size, sha256)
    where f.id = v.id
  `.execute(db);
  // A write that outlived TASK_UPLOAD_TTL_MS was swept as abandoned: say so rather than report a file that is gone.
  if (Number(result.numAffectedRows ?? files.length) !== files.length) {
    throw new Error(`a file was deleted by the sweep before it was complete: its write took longer than TASK_UPLOAD_TTL_MS`);
  }
}

/** Deletes a file that will not complete (best effort: the sweep deletes what this misses). */
async function discard(db: Kysely<Database>, id: string): Promise<void> {
  await sql`delete from task_files where id = ${id} and not complete`.execute(db).catch(() => undefined);
}

/**
 * Stores an upload: an input no task has yet. Returns its reference, which CreateTask names
 * (attachUploads); an upload no task takes within the sweep's age is deleted. Beyond a cap,
 * FileTooLargeError and nothing kept.
 */
export async function storeUpload(db: Kysely<Database>, bytes: FileBytes, name: string, body: AsyncIterable<Uint8Array>, caps: FileCaps): Promise<{ ref: string; size: number; sha256: string }> {
  const ref = `up_${randomBytes(18).toString("base64url")}`;
  const limit = writeLimit(caps, caps.perTaskBytes, caps.totalBytes - (await storedBytes(db)));
  const { rows } = await sql<{ id: string }>`
    insert into task_files (upload_ref, direction, name) values (${ref}, 'in', ${name}) returning id
  `.execute(db);
  const id = rows[0]!.id;
  try {
    const written = await bytes.write(id, name, body, limit);
    await completeFiles(db, [{ id, ...written }]);
    return { ref, ...written };
  } catch (err) {
    await discard(db, id);
    throw err;
  }
}

/**
 * Gives a new task the uploads its CreateTask names, under the names it gives them, in the
 * create's transaction. Each upload is taken once: a reference that is unknown, incomplete, swept
 * or already another task's is InvalidArgument, as is a total beyond the per-task cap.
 */
export async function attachUploads(trx: Kysely<Database>, taskId: string, files: { name: string; upload: string }[], perTaskBytes: number, field = "files"): Promise<void> {
  if (files.length === 0) return;
  const { rows } = await sql<{ upload_ref: string; size: string }>`
    update task_files f set task_id = ${taskId}, name = v.name
    from unnest(${files.map((f) => f.upload)}::text[], ${files.map((f) => f.name)}::text[]) as v (ref, name)
    where f.upload_ref = v.ref and f.task_id is null and f.complete
    returning f.upload_ref, f.size
  `.execute(trx);
  const found = new Set(rows.map((r) => r.upload_ref));
  const missing = files.flatMap((f, i) => (found.has(f.upload) ? [] : [{ field: `${field}[${i}].upload`, reason: `no upload ${f.upload} is waiting (unknown, expired, or already given to a task)` }]));
  if (missing.length > 0) throw new InvalidArgumentError(missing);
  const total = rows.reduce((sum, r) => sum + Number(r.size), 0);
  if (total > perTaskBytes) throw InvalidArgumentError.of(field, `the files hold ${total} bytes; a task's files may hold at most ${perTaskBytes} (TASK_FILES_MAX_TASK_BYTES)`);
}

/** A task's complete files, inputs first, then outputs by attempt and name. */
export async function listTaskFiles(db: Kysely<Database>, taskId: string, direction?: FileDirection): Promise<TaskFile[]> {
  const { rows } = await sql<FileRow>`
    select id, task_id, direction, attempt, name, size, sha256, created_at from task_files
    where task_id = ${taskId} and complete ${direction ? sql`and direction = ${direction}` : sql``}
    order by direction, attempt, name
  `.execute(db);
  return rows.map(toTaskFile);
}

/** One complete file of a task by name: of `attempt`, or (outputs) of the latest attempt that made one. */
export async function findTaskFile(db: Kysely<Database>, taskId: string, direction: FileDirection, name: string, attempt?: number): Promise<TaskFile | undefined> {
  const { rows } = await sql<FileRow>`
    select id, task_id, direction, attempt, name, size, sha256, created_at from task_files
    where task_id = ${taskId} and direction = ${direction} and name = ${name} and complete ${attempt === undefined ? sql`` : sql`and attempt = ${attempt}`}
    order by attempt desc limit 1
  `.execute(db);
  return rows[0] ? toTaskFile(rows[0]) : undefined;
}

/** One output to store: its name and a way to open its bytes. */
export interface OutputSource {
  name: string;
  open(): AsyncIterable<Uint8Array>;
}

/**
 * Stores an attempt's outputs, one after the other, and only then makes them visible, all in one
 * statement: an export cut short (a cap, the worker killed) leaves none of this attempt's files
 * visible, only incomplete rows the sweep removes. Beyond the per-task cap (all outputs of the
 * attempt together) or the total cap, FileTooLargeError.
 */
export async function storeOutputs(db: Kysely<Database>, bytes: FileBytes, taskId: string, attempt: number, outputs: OutputSource[], caps: FileCaps): Promise<TaskFile[]> {
  if (outputs.length === 0) return [];
  const written: { id: string; size: number; sha256: string }[] = [];
  let used = 0;
  let room = caps.totalBytes - (await storedBytes(db));
  try {
    for (const output of outputs) {
      const { rows } = await sql<{ id: string }>`
        insert into task_files (task_id, attempt, direction, name) values (${taskId}, ${attempt}, 'out', ${output.name}) returning id
      `.execute(db);
      const id = rows[0]!.id;
      written.push({ id, size: 0, sha256: "" });
      const result = await bytes.write(id, output.name, output.open(), writeLimit(caps, caps.perTaskBytes - used, room));
      written[written.length - 1] = { id, ...result };
      used += result.size;
      room -= result.size;
    }
  } catch (err) {
    for (const w of written) await discard(db, w.id);
    throw err;
  }
  await completeFiles(db, written);
  return listTaskFiles(db, taskId, "out").then((files) => files.filter((f) => f.attempt === attempt));
}

/**
 * Deletes, up to `limit` at a time, files left incomplete (an upload or export cut short) and
 * uploads no task took, created more than `ageMs` ago. Returns how many went.
 */
export async function sweepFiles(db: Kysely<Database>, ageMs: number, limit: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    with doomed as (
      select id from task_files
      where (not complete or task_id is null) and created_at < now() - make_interval(secs => ${ageMs / 1000})
      order by created_at limit ${limit}
    ),
    deleted as (delete from task_files f using doomed where f.id = doomed.id returning 1)
    select count(*) as n from deleted
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** File chunks one retention statement deletes (64 MiB): a batch of tasks with large files is emptied in steps. */
export const RETENTION_CHUNKS_PER_BATCH = 64;

/**
 * Empties, `limit` chunks at a time, the files of tasks that finished with `status` more than
 * `ageMs` ago (the tasks retention is about to delete): their files are hidden first (a download
 * never meets a file half gone), then their chunks deleted. The retention pass calls it until it
 * returns less than `limit`, so the statement that deletes the tasks cascades to file rows only,
 * never to gigabytes of chunks. Returns the chunks deleted.
 */
export async function deleteExpiredFileChunks(db: Kysely<Database>, status: TaskStatus, ageMs: number, limit = RETENTION_CHUNKS_PER_BATCH): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    with expired_files as (
      select f.id from tasks t join task_files f on f.task_id = t.id
      where t.status = ${status}::task_status and t.finished_at < now() - make_interval(secs => ${ageMs / 1000})
    ),
    hidden as (update task_files set complete = false where id in (select id from expired_files) and complete returning 1),
    doomed as (select file_id, seq from task_file_chunks where file_id in (select id from expired_files) limit ${limit}),
    deleted as (delete from task_file_chunks c using doomed where c.file_id = doomed.file_id and c.seq = doomed.seq returning 1)
    -- hidden is named here so the reader sees it is meant to run (PostgreSQL runs it regardless).
    select (select count(*) from deleted) as n, (select count(*) from hidden) as hidden
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}
