import type { JsonObject } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { sql, type Kysely } from "kysely";
import { expect } from "vitest";
import type { Task, TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Database, TaskStatus } from "../../src/store/schema.js";

/** A CreateTask request as the generated client accepts it (name and type always set). */
export interface CreateTaskInput {
  name: string;
  type: string;
  parameters?: JsonObject;
  priority?: number;
  maxAttempts?: number;
  timeout?: Duration;
  runAt?: Timestamp;
  idempotencyKey?: string;
  queue?: string;
  key?: string;
  labels?: Record<string, string>;
}

let sequence = 0;

/** A valid CreateTask request (a noop task with a unique name), with overrides on top. */
export function taskRequest(overrides: Partial<CreateTaskInput> = {}): CreateTaskInput {
  sequence += 1;
  return { name: `task-${sequence}`, type: "noop", parameters: {}, ...overrides };
}

/** Creates a task through the API (noop by default) and returns it. */
export async function createTask(client: Client<typeof TaskService>, overrides: Partial<CreateTaskInput> = {}): Promise<Task> {
  const { task } = await client.createTask(taskRequest(overrides));
  if (!task) throw new Error("CreateTask returned no task");
  return task;
}

/** How many rows the tables that CreateTask writes hold. */
export interface RowCounts {
  tasks: number;
  history: number;
  jobs: number;
}

/** Counts tasks, task_history and graphile-worker jobs, to prove a failed call wrote nothing. */
export async function rowCounts(db: Kysely<Database>): Promise<RowCounts> {
  const { rows } = await sql<{ tasks: string; history: string; jobs: string }>`
    select (select count(*) from tasks) as tasks,
           (select count(*) from task_history) as history,
           (select count(*) from graphile_worker.jobs) as jobs
  `.execute(db);
  const row = rows[0]!;
  return { tasks: Number(row.tasks), history: Number(row.history), jobs: Number(row.jobs) };
}

/** The graphile-worker job of a task, or undefined. */
export async function jobOf(db: Kysely<Database>, taskId: bigint | string) {
  const { rows } = await sql<{ key: string; run_at: Date; priority: number; payload: { taskId: string; attempt: number } }>`
    select j.key, j.run_at, j.priority, p.payload
    from graphile_worker.jobs j join graphile_worker._private_jobs p on p.id = j.id
    where j.key = ${`task:${taskId}`}
  `.execute(db);
  return rows[0];
}

/** Puts a task into a status directly in the database (as a worker would), with extra columns. */
export async function setTaskRow(
  db: Kysely<Database>,
  taskId: bigint | string,
  status: TaskStatus,
  extra: { attempts?: number; last_error?: string | null; finished_at?: Date | null; started_at?: Date | null } = {},
): Promise<void> {
  await db.updateTable("tasks").set({ status, ...extra }).where("id", "=", String(taskId)).executeTakeFirstOrThrow();
}

/** The stored row of a task. */
export async function taskRow(db: Kysely<Database>, taskId: bigint | string) {
  return db.selectFrom("tasks").selectAll().where("id", "=", String(taskId)).executeTakeFirstOrThrow();
}

/**
 * Awaits a call that must fail with a Connect error of this code, optionally with a message that
 * matches; returns the error for further checks.
 */
export async function expectConnectError(call: Promise<unknown>, code: Code, message?: string | RegExp): Promise<ConnectError> {
  const outcome = await call.then(
    (value) => ({ ok: true as const, value }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  if (outcome.ok) throw new Error(`expected ${Code[code]}, but the call succeeded: ${JSON.stringify(outcome.value, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}`);
  const err = outcome.err;
  expect(err).toBeInstanceOf(ConnectError);
  const connectError = err as ConnectError;
  expect(Code[connectError.code], connectError.rawMessage).toBe(Code[code]);
  if (message !== undefined) expect(connectError.rawMessage).toMatch(message);
  return connectError;
}
