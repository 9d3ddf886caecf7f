import { Code, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditService } from "../src/gen/task/v1/audit_pb.js";
import { BulkAction, TaskControlService } from "../src/gen/task/v1/control_pb.js";
import { QueueService } from "../src/gen/task/v1/queue_pb.js";
import { ScheduleService } from "../src/gen/task/v1/schedule_pb.js";
import { TaskService, TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Role, TokenService } from "../src/gen/task/v1/token_pb.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { loadConfig } from "../src/config.js";
import { Scheduler } from "../src/schedules/scheduler.js";
import { deleteExpiredTasks } from "../src/store/retention.js";
import type { AuditEventRow } from "../src/store/audit.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, taskRequest } from "./helpers/factory.js";
import { FakeClock } from "./helpers/schedules.js";

const TOKENS = { reader: "reader-secret-for-audit-0001", operator: "operator-secret-for-audit-01", admin: "admin-secret-for-audit-00001" };
const CONFIGURED = [`ro:reader:${TOKENS.reader}`, `ci:operator:${TOKENS.operator}`, `boss:admin:${TOKENS.admin}`];

const headers =
  (token: string, extra: Record<string, string> = {}): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    for (const [k, v] of Object.entries(extra)) req.header.set(k, v);
    return next(req);
  };

function clients(transport: Transport) {
  return {
    task: createClient(TaskService, transport),
    control: createClient(TaskControlService, transport),
    queue: createClient(QueueService, transport),
    schedule: createClient(ScheduleService, transport),
    token: createClient(TokenService, transport),
    audit: createClient(AuditService, transport),
  };
}

let api: TestApi;
const as = (role: keyof typeof TOKENS, extra: Record<string, string> = {}) =>
  clients(createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", interceptors: [headers(TOKENS[role], extra)] }));
const db = () => api.database.db.kysely;

beforeAll(async () => {
  api = await startTestApi({ config: { apiTokens: CONFIGURED } });
});
afterAll(async () => api?.close());

async function lastAuditId(): Promise<string> {
  const { rows } = await sql<{ id: string | null }>`select max(id)::text as id from audit_events`.execute(db());
  return rows[0]?.id ?? "0";
}

async function rowsAfter(id: string): Promise<AuditEventRow[]> {
  return db().selectFrom("audit_events").selectAll().where("id", ">", id as never).orderBy("id").execute();
}

/** Runs a change and returns the ONE audit row it wrote (fails if it wrote none or more). */
async function oneRow(change: () => Promise<unknown>): Promise<AuditEventRow> {
  const before = await lastAuditId();
  await change();
  const rows = await rowsAfter(before);
  expect(rows, JSON.stringify(rows)).toHaveLength(1);
  return rows[0]!;
}

/** Runs a call that must fail with `code` and checks it wrote no audit row. */
async function noRow(call: () => Promise<unknown>, code: Code): Promise<void> {
  const before = await lastAuditId();
  await expectConnectError(call(), code);
  expect(await rowsAfter(before)).toEqual([]);
}

const queuedTask = async (overrides = {}) => (await as("operator").task.createTask(taskRequest(overrides))).task!;

describe("every change writes exactly one audit row, in its transaction", () => {
  it("creates: single (named token, request id, client address, user agent), batch, idempotent replay writes none", async () => {
    let answered: string | null = null;
    const row = await oneRow(() =>
      as("operator", { "x-request-id": "req-create-1", "user-agent": "audit-test/1" }).task.createTask(taskRequest({ name: "audited" }), {
        onHeader: (h) => (answered = h.get("x-request-id")),
      }),
    );
    expect(row).toMatchObject({ actor: "ci", role: "operator", action: "create", request_id: "req-create-1", user_agent: "audit-test/1", client_address: "127.0.0.1" });
    expect(row.resources).toEqual({ tasks: [expect.any(String)] });
    expect(row.parameters).toMatchObject({ name: "audited", type: "noop", queue: "default" });
    expect(answered).toBe("req-create-1");

    // Without a request id the server makes one, returns it, and records it.
    let made: string | null = null;
    const generated = await oneRow(() => as("operator").task.createTask(taskRequest(), { onHeader: (h) => (made = h.get("x-request-id")) }));
    expect(made).toMatch(/^[0-9a-f-]{36}$/);
    expect(generated.request_id).toBe(made);

    const batch = await oneRow(() => as("operator").task.createTasks({ tasks: [taskRequest(), taskRequest(), taskRequest()] }));
    expect(batch).toMatchObject({ actor: "ci", action: "create_batch", parameters: { count: 3, types: ["noop"] } });
    expect((batch.resources as { tasks: string[] }).tasks).toHaveLength(3);

    const keyed = taskRequest({ idempotencyKey: "audit-key" } as never);
    expect(await oneRow(() => as("operator").task.createTask(keyed))).toMatchObject({ action: "create" });
    const before = await lastAuditId();
    await as("operator").task.createTask(keyed);
    expect(await rowsAfter(before)).toEqual([]);
  });

  it("cancel, retry, pause, resume, delete: one row each, and history names the actor", async () => {
    const task = await queuedTask();
    const id = task.id;
    expect(await oneRow(() => as("operator").control.pauseTask({ id }))).toMatchObject({ actor: "ci", role: "operator", action: "pause", resources: { tasks: [String(id)] } });
    expect(await oneRow(() => as("operator").control.resumeTask({ id }))).toMatchObject({ action: "resume", resources: { tasks: [String(id)] } });
    const cancel = await oneRow(() => as("operator").task.cancelTask({ id, reason: "not needed" }));
    expect(cancel).toMatchObject({ actor: "ci", action: "cancel", reason: "not needed", resources: { tasks: [String(id)] } });
    expect(await oneRow(() => as("operator").task.retryTask({ id }))).toMatchObject({ action: "retry", parameters: { was: "cancelled" } });
    const history = (await as("reader").task.getTaskHistory({ id })).history.map((h) => h.details);
    expect(history).toEqual([
      "created",
      "paused by ci (operator)",
      "resumed by ci (operator)",
      "cancelled by ci (operator): not needed",
      "manual retry by ci (operator): back to queued with attempts reset (was cancelled after 0 attempts)",
    ]);
    await as("operator").task.cancelTask({ id });
    expect(await oneRow(() => as("admin").control.deleteTask({ id }))).toMatchObject({ actor: "boss", role: "admin", action: "delete", resources: { tasks: [String(id)] } });
  });

  it("a bulk action: one row with its filter and the counts it hit, not its ids; a dry run writes none", async () => {
    const name = `bulk-${Date.now()}`;
    await as("operator").task.createTasks({ tasks: Array.from({ length: 7 }, () => taskRequest({ name })) });
    const selection = { nameContains: name, statuses: [TaskStatus.QUEUED] };
    const dryBefore = await lastAuditId();
    await as("operator").control.bulkTasks({ action: BulkAction.CANCEL, selection, dryRun: true });
    expect(await rowsAfter(dryBefore)).toEqual([]);
    const row = await oneRow(() => as("operator").control.bulkTasks({ action: BulkAction.CANCEL, selection, reason: "cleanup" }));
    expect(row).toMatchObject({ actor: "ci", action: "bulk_cancel", reason: "cleanup", resources: { filter: { nameContains: name, statuses: ["queued"] }, matched: 7, eligible: 7, changed: 7 } });
    expect(row.resources).not.toHaveProperty("tasks");
    const deleted = await oneRow(() => as("admin").control.bulkTasks({ action: BulkAction.DELETE, selection: { nameContains: name } }));
    expect(deleted).toMatchObject({ actor: "boss", action: "bulk_delete", resources: { changed: 7 } });
    const history = await db().selectFrom("task_history").select("details").where("details", "like", "cancelled by ci (operator) in a bulk request%").execute();
    expect(history).toHaveLength(0); // deleted with their tasks
  });

  it("queue settings, pause and resume", async () => {
    expect(await oneRow(() => as("admin").queue.updateQueue({ name: "reports", settings: { concurrency: 3 }, updateMask: { paths: ["concurrency"] } }))).toMatchObject({
      actor: "boss",
      action: "queue_update",
      resources: { queue: "reports" },
      parameters: { concurrency: 3 },
    });
    expect(await oneRow(() => as("operator").queue.pauseQueue({ name: "reports" }))).toMatchObject({ actor: "ci", action: "queue_pause", resources: { queue: "reports" } });
    expect(await oneRow(() => as("operator").queue.resumeQueue({ name: "reports" }))).toMatchObject({ action: "queue_resume" });
  });

  it("schedules: create, update, pause, resume, trigger, delete, and the task a tick creates", async () => {
    const s = as("admin").schedule;
    const spec = { name: "audited", cron: "0 0 1 1 *", task: { type: "noop", parameters: {} } };
    expect(await oneRow(() => s.createSchedule({ spec }))).toMatchObject({ actor: "boss", action: "schedule_create", resources: { schedule: "audited" }, parameters: { cron: "0 0 1 1 *", type: "noop" } });
    expect(await oneRow(() => s.updateSchedule({ name: "audited", spec: { ...spec, cron: "0 0 2 1 *" } }))).toMatchObject({ action: "schedule_update", parameters: { cron: "0 0 2 1 *" } });
    expect(await oneRow(() => s.pauseSchedule({ name: "audited" }))).toMatchObject({ action: "schedule_pause" });
    expect(await oneRow(() => s.resumeSchedule({ name: "audited" }))).toMatchObject({ action: "schedule_resume" });
    const trigger = await oneRow(() => s.triggerSchedule({ name: "audited" }));
    expect(trigger).toMatchObject({ action: "schedule_trigger", resources: { schedule: "audited", tasks: [expect.any(String)] } });

    // A tick (on a clock just past one of its ticks): the scheduler creates its task as `schedule:audited`.
    await sql`update schedules set next_run_at = '2026-01-02T00:00:00Z' where name = 'audited'`.execute(db());
    const clock = new FakeClock("2026-01-02T00:00:01Z");
    const config = loadConfig({}, {});
    const plugins = builtinPlugins(config, api.database.logger);
    try {
      const tick = await oneRow(() => new Scheduler({ db: api.database.db, registry: plugins.registry, logger: api.database.logger, clock }).runDue());
      expect(tick).toMatchObject({ actor: "schedule:audited", role: null, action: "create", resources: { schedule: "audited", tasks: [expect.any(String)] } });
    } finally {
      await plugins.close();
    }
    expect(await oneRow(() => s.deleteSchedule({ name: "audited" }))).toMatchObject({ action: "schedule_delete", resources: { schedule: "audited" } });
  });

  it("tokens: create and revoke, never storing the secret", async () => {
    let secret = "";
    const created = await oneRow(async () => (secret = (await as("admin").token.createToken({ name: "nightly", role: Role.OPERATOR })).secret));
    expect(created).toMatchObject({ actor: "boss", action: "token_create", resources: { token: "nightly" }, parameters: { role: "operator" } });
    expect(JSON.stringify(created)).not.toContain(secret);
    expect(await oneRow(() => as("admin").token.revokeToken({ name: "nightly" }))).toMatchObject({ action: "token_revoke", resources: { token: "nightly" } });
  });

  it("a retention run: one row with its counts; old audit rows go with it", async () => {
    const task = await queuedTask();
    await as("operator").task.cancelTask({ id: task.id });
    await sql`update tasks set finished_at = now() - interval '2 days' where id = ${task.id}`.execute(db());
    await sql`insert into audit_events (actor, role, action, at) values ('old', 'admin', 'cancel', now() - interval '100 days')`.execute(db());
    const row = await oneRow(() => deleteExpiredTasks(db(), { succeededMs: 0, failedMs: 0, cancelledMs: 86_400_000, auditMs: 90 * 86_400_000 }, 100));
    expect(row).toMatchObject({ actor: "system:retention", role: null, action: "retention_run", resources: { cancelled: 1, auditEvents: 1 } });
    expect(await db().selectFrom("audit_events").select("id").where("actor", "=", "old").execute()).toEqual([]);
    // Nothing to delete: no row.
    const before = await lastAuditId();
    await deleteExpiredTasks(db(), { succeededMs: 0, failedMs: 0, cancelledMs: 86_400_000, auditMs: 90 * 86_400_000 }, 100);
    expect(await rowsAfter(before)).toEqual([]);
  });
});

describe("a refused or failed call writes no audit row", () => {
  it("PermissionDenied", async () => {
    const task = await queuedTask();
    await noRow(() => as("reader").task.cancelTask({ id: task.id }), Code.PermissionDenied);
    await noRow(() => as("reader").task.createTask(taskRequest()), Code.PermissionDenied);
    await noRow(() => as("operator").control.deleteTask({ id: task.id }), Code.PermissionDenied);
    await noRow(() => as("operator").control.bulkTasks({ action: BulkAction.DELETE, selection: { all: true } }), Code.PermissionDenied);
    await noRow(() => as("operator").queue.updateQueue({ name: "reports", settings: { concurrency: 1 }, updateMask: { paths: ["concurrency"] } }), Code.PermissionDenied);
    await noRow(() => as("operator").token.createToken({ name: "sneaky", role: Role.ADMIN }), Code.PermissionDenied);
    await noRow(() => as("operator").task.createTask(taskRequest({ type: "shell", parameters: { command: "true" } })), Code.PermissionDenied);
  });

  it("InvalidArgument, NotFound, FailedPrecondition", async () => {
    await noRow(() => as("operator").task.createTask(taskRequest({ name: "" })), Code.InvalidArgument);
    await noRow(() => as("operator").task.createTasks({ tasks: [taskRequest(), taskRequest({ type: "no-such-type" })] }), Code.InvalidArgument);
    await noRow(() => as("operator").task.cancelTask({ id: 0n }), Code.InvalidArgument);
    await noRow(() => as("operator").task.cancelTask({ id: 987_654_321n }), Code.NotFound);
    await noRow(() => as("operator").control.pauseTask({ id: 987_654_321n }), Code.NotFound);
    await noRow(() => as("admin").control.deleteTask({ id: 987_654_321n }), Code.NotFound);
    const task = await queuedTask();
    await noRow(() => as("operator").task.retryTask({ id: task.id }), Code.FailedPrecondition);
    await noRow(() => as("operator").control.resumeTask({ id: task.id }), Code.FailedPrecondition);
    await noRow(() => as("admin").control.deleteTask({ id: task.id }), Code.FailedPrecondition);
    await noRow(() => as("admin").queue.updateQueue({ name: "reports", updateMask: { paths: [] } }), Code.InvalidArgument);
    await noRow(() => as("admin").schedule.pauseSchedule({ name: "missing" }), Code.NotFound);
    await noRow(() => as("admin").schedule.updateSchedule({ name: "missing", spec: { name: "missing", cron: "0 0 1 1 *", task: { type: "noop", parameters: {} } } }), Code.NotFound);
    await noRow(() => as("admin").schedule.deleteSchedule({ name: "missing" }), Code.NotFound);
    await noRow(() => as("admin").token.revokeToken({ name: "missing" }), Code.NotFound);
    await noRow(() => as("admin").token.createToken({ name: "boss", role: Role.ADMIN }), Code.AlreadyExists);
  });
});

describe("reading the log", () => {
  it("ListAuditEvents: admin only, newest first, filtered and paged", async () => {
    await noRow(() => as("operator").audit.listAuditEvents({}), Code.PermissionDenied);
    await noRow(() => as("reader").audit.listAuditEvents({}), Code.PermissionDenied);
    const before = await lastAuditId();
    const all = await as("admin").audit.listAuditEvents({ actors: ["ci"], actions: ["cancel"] });
    expect(await rowsAfter(before)).toEqual([]); // reads are not audited
    expect(all.events.length).toBeGreaterThan(0);
    expect(all.events.every((e) => e.actor === "ci" && e.action === "cancel")).toBe(true);
    const ids = all.events.map((e) => e.id);
    expect([...ids].sort((a, b) => (a > b ? -1 : 1))).toEqual(ids);

    const first = await as("admin").audit.listAuditEvents({ pageSize: 2 });
    expect(first.events).toHaveLength(2);
    const second = await as("admin").audit.listAuditEvents({ pageSize: 2, pageToken: first.nextPageToken });
    expect(second.events[0]!.id).toBeLessThan(first.events[1]!.id);
    await expectConnectError(as("admin").audit.listAuditEvents({ pageToken: "garbage" }), Code.InvalidArgument);
    expect(await as("admin").audit.listAuditEvents({ since: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } })).toMatchObject({ events: [] });
  });

  it("GET /audit/export: NDJSON for an admin, 403 for an operator, 401 without a token", async () => {
    const url = `${api.server.url}/audit/export?actor=ci&action=create`;
    const res = await fetch(url, { headers: { authorization: `Bearer ${TOKENS.admin}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/application\/x-ndjson/);
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { actor: string; action: string; resources: { tasks: string[] } });
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from audit_events where actor = 'ci' and action = 'create'`.execute(db());
    expect(lines).toHaveLength(rows[0]!.n);
    expect(lines.every((l) => l.actor === "ci" && l.action === "create" && l.resources.tasks.length === 1)).toBe(true);
    expect((await fetch(url, { headers: { authorization: `Bearer ${TOKENS.operator}` } })).status).toBe(403);
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(`${api.server.url}/audit/export?bogus=1`, { headers: { authorization: `Bearer ${TOKENS.admin}` } })).status).toBe(400);
  });

  it("the table has no way to change a row through the API: no RPC updates or deletes one", () => {
    expect(AuditService.methods.map((m) => m.name)).toEqual(["ListAuditEvents"]);
  });
});
