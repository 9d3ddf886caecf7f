import type { JsonObject } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import type { TaskStatus as StoredStatus } from "../src/store/schema.js";
import { startInMemoryApi, type InMemoryApi } from "./helpers/api.js";
import { createTask, expectConnectError, setTaskRow, taskRequest } from "./helpers/factory.js";

let api: InMemoryApi;

/** What this file put in its database: every task with its type and status. */
interface Fixture {
  id: bigint;
  type: string;
  status: TaskStatus;
}
const fixtures: Fixture[] = [];

const toProto: Record<StoredStatus, TaskStatus> = {
  queued: TaskStatus.QUEUED,
  running: TaskStatus.RUNNING,
  retrying: TaskStatus.RETRYING,
  paused: TaskStatus.PAUSED,
  succeeded: TaskStatus.SUCCEEDED,
  failed: TaskStatus.FAILED,
  cancelled: TaskStatus.CANCELLED,
  expired: TaskStatus.EXPIRED,
};

/** Ids newest first of the fixtures that match. */
function expectedIds(match: (f: Fixture) => boolean = () => true): bigint[] {
  return fixtures
    .filter(match)
    .map((f) => f.id)
    .sort((a, b) => (a > b ? -1 : 1));
}

const ids = (tasks: { id: bigint }[]) => tasks.map((t) => t.id);

beforeAll(async () => {
  api = await startInMemoryApi();
  // 45 queued noop tasks, so that the default page size (50) is exceeded...
  const { tasks } = await api.client.createTasks({ tasks: Array.from({ length: 45 }, () => taskRequest()) });
  for (const t of tasks) fixtures.push({ id: t.id, type: "noop", status: TaskStatus.QUEUED });
  // ...then 12 tasks of every type spread over every status.
  const types: Array<{ type: string; parameters: JsonObject }> = [
    { type: "shell", parameters: { command: "true" } },
    { type: "send_email", parameters: { to: "a@example.com", subject: "s", body: "b" } },
    { type: "noop", parameters: { sleep_ms: 1 } },
  ];
  const statuses: StoredStatus[] = ["queued", "running", "retrying", "succeeded", "failed", "cancelled"];
  for (let i = 0; i < 12; i++) {
    const task = await createTask(api.client, types[i % 3]!);
    const status = statuses[i % 6]!;
    if (status === "cancelled") await api.client.cancelTask({ id: task.id, reason: "fixture" });
    else if (status !== "queued") await setTaskRow(api.database.db.kysely, task.id, status);
    fixtures.push({ id: task.id, type: task.type, status: toProto[status] });
  }
});
afterAll(async () => api?.close());

describe("ListTasks filters", () => {
  it("returns every status, newest first, when no filter is given", async () => {
    const res = await api.client.listTasks({ pageSize: 1000 });
    expect(ids(res.tasks)).toEqual(expectedIds());
    // Every status the fixtures have (all but PAUSED, which pause-resume.test.ts lists).
    expect(new Set(res.tasks.map((t) => t.status))).toEqual(new Set(fixtures.map((f) => f.status)));
    expect(res.totalCount).toBe(BigInt(fixtures.length));
    expect(res.nextPageToken).toBe("");
  });

  it("filters by one status", async () => {
    const res = await api.client.listTasks({ statuses: [TaskStatus.CANCELLED] });
    expect(ids(res.tasks)).toEqual(expectedIds((f) => f.status === TaskStatus.CANCELLED));
    expect(res.tasks.every((t) => t.status === TaskStatus.CANCELLED)).toBe(true);
    expect(res.totalCount).toBe(2n);
  });

  it("filters by several statuses", async () => {
    const wanted = [TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.SUCCEEDED];
    const res = await api.client.listTasks({ statuses: wanted });
    expect(ids(res.tasks)).toEqual(expectedIds((f) => wanted.includes(f.status)));
    expect(res.totalCount).toBe(6n);
  });

  it("filters by type, and by type and status together", async () => {
    const byType = await api.client.listTasks({ types: ["shell", "send_email"] });
    expect(ids(byType.tasks)).toEqual(expectedIds((f) => f.type === "shell" || f.type === "send_email"));
    expect(byType.totalCount).toBe(8n);

    const both = await api.client.listTasks({ types: ["noop", "shell"], statuses: [TaskStatus.QUEUED] });
    expect(ids(both.tasks)).toEqual(expectedIds((f) => (f.type === "noop" || f.type === "shell") && f.status === TaskStatus.QUEUED));
    expect(both.totalCount).toBe(47n);
    expect(both.tasks).toHaveLength(47);

    const none = await api.client.listTasks({ types: ["send_email"], statuses: [TaskStatus.QUEUED] });
    expect(none).toMatchObject({ tasks: [], totalCount: 0n, nextPageToken: "" });
  });

  it("answers the same order for the same request", async () => {
    const a = await api.client.listTasks({ pageSize: 20 });
    const b = await api.client.listTasks({ pageSize: 20 });
    expect(ids(a.tasks)).toEqual(ids(b.tasks));
    expect(ids(a.tasks)).toEqual(expectedIds().slice(0, 20));
  });
});

describe("ListTasks paging", () => {
  it("defaults to 50 per page and counts all matches", async () => {
    const res = await api.client.listTasks({});
    expect(res.pageSize).toBe(50);
    expect(res.tasks).toHaveLength(50);
    expect(res.totalCount).toBe(BigInt(fixtures.length));
    expect(res.nextPageToken).not.toBe("");
  });

  it("accepts 1000 per page and rejects 1001", async () => {
    await expect(api.client.listTasks({ pageSize: 1000 })).resolves.toMatchObject({ pageSize: 1000 });
    await expectConnectError(api.client.listTasks({ pageSize: 1001 }), Code.InvalidArgument, "page_size");
    await expectConnectError(api.client.listTasks({ pageSize: -1 }), Code.InvalidArgument, "page_size");
  });

  it("walks pages by number", async () => {
    const seen: bigint[] = [];
    for (let page = 1; page <= 6; page++) {
      const res = await api.client.listTasks({ pageSize: 10, pageNumber: page });
      expect(res.pageNumber).toBe(page);
      expect(res.totalCount).toBe(BigInt(fixtures.length));
      seen.push(...ids(res.tasks));
    }
    expect(seen).toEqual(expectedIds());
    const past = await api.client.listTasks({ pageSize: 10, pageNumber: 7 });
    expect(past).toMatchObject({ tasks: [], nextPageToken: "" });
    await expectConnectError(api.client.listTasks({ pageNumber: -1 }), Code.InvalidArgument, "page_number");
  });

  it("walks pages by token with filters applied", async () => {
    const seen: bigint[] = [];
    let token = "";
    do {
      const res = await api.client.listTasks({ pageSize: 4, pageToken: token, types: ["shell", "send_email"] });
      seen.push(...ids(res.tasks));
      token = res.nextPageToken;
    } while (token !== "");
    expect(seen).toEqual(expectedIds((f) => f.type !== "noop"));
  });

  it("reports every total as exact: status and type filters from the counts, ids counted", async () => {
    for (const req of [{}, { statuses: [TaskStatus.FAILED, TaskStatus.QUEUED] }, { types: ["shell"] }, { ids: [fixtures[0]!.id, 999_999n] }]) {
      const res = await api.client.listTasks(req);
      expect(res.totalCountExact).toBe(true);
    }
    const res = await api.client.listTasks({ ids: [fixtures[0]!.id, fixtures[1]!.id, 999_999n] });
    expect(res.totalCount).toBe(2n);
  });

  it("refuses page numbers that start beyond the first 100,000 tasks, pointing to page_token", async () => {
    await expect(api.client.listTasks({ pageSize: 1000, pageNumber: 100 })).resolves.toMatchObject({ tasks: [], pageNumber: 100 });
    await expectConnectError(api.client.listTasks({ pageSize: 1000, pageNumber: 101 }), Code.InvalidArgument, /page_number.*page_token/);
    await expectConnectError(api.client.listTasks({ pageNumber: 2001 }), Code.InvalidArgument, /page_number/);
    await expect(api.client.listTasks({ pageNumber: 2000 })).resolves.toMatchObject({ tasks: [] });
  });

  it("rejects page_token together with page_number, and malformed tokens", async () => {
    const { nextPageToken } = await api.client.listTasks({ pageSize: 5 });
    await expectConnectError(api.client.listTasks({ pageToken: nextPageToken, pageNumber: 2 }), Code.InvalidArgument, "page_token");
    for (const bad of ["garbage!", "bm90IGEgdG9rZW4", Buffer.from("v1:abc").toString("base64url"), Buffer.from("v1:-5").toString("base64url")]) {
      await expectConnectError(api.client.listTasks({ pageToken: bad }), Code.InvalidArgument, "page_token");
    }
  });

  it("rejects unknown and unspecified status values", async () => {
    await expectConnectError(api.client.listTasks({ statuses: [99 as TaskStatus] }), Code.InvalidArgument, "statuses[0]");
    await expectConnectError(api.client.listTasks({ statuses: [TaskStatus.QUEUED, TaskStatus.UNSPECIFIED] }), Code.InvalidArgument, "statuses[1]");
    await expectConnectError(api.client.listTasks({ types: [""] }), Code.InvalidArgument, "types[0]");
  });

  it("rejects a type filter that PostgreSQL cannot store as InvalidArgument, not Internal", async () => {
    await expectConnectError(api.client.listTasks({ types: ["noop", "sh\u0000ell"] }), Code.InvalidArgument, "types[1]");
  });

  // Last in the file: it adds tasks.
  it("visits every task exactly once by token while new tasks arrive between pages", async () => {
    const existing = expectedIds();
    const seen: bigint[] = [];
    let token = "";
    let pages = 0;
    do {
      const res = await api.client.listTasks({ pageSize: 7, pageToken: token });
      seen.push(...ids(res.tasks));
      token = res.nextPageToken;
      pages++;
      // Newer tasks sort before the cursor, so they must not shift or repeat what is left to read.
      const { tasks } = await api.client.createTasks({ tasks: [taskRequest(), taskRequest()] });
      for (const t of tasks) fixtures.push({ id: t.id, type: "noop", status: TaskStatus.QUEUED });
    } while (token !== "" && pages < 100);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(existing);
    expect(pages).toBe(Math.ceil(existing.length / 7));
  });
});
