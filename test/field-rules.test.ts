import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateBulkTasks } from "../src/api/bulk-validate.js";
import { UNSTORABLE_REASON } from "../src/api/fields.js";
import { validateScheduleSpec } from "../src/api/schedule-validate.js";
import { validateCreateTask, validateListTasks } from "../src/api/validate.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { InvalidArgumentError } from "../src/errors.js";
import { QUEUE_NAME_PATTERN } from "../src/field-rules.js";
import { BulkAction, BulkTasksRequestSchema, TaskSelectionSchema } from "../src/gen/task/v1/control_pb.js";
import { ScheduleSpecSchema } from "../src/gen/task/v1/schedule_pb.js";
import { CreateTaskRequestSchema, ListTasksRequestSchema } from "../src/gen/task/v1/task_pb.js";
import { noopPlugin } from "../src/plugins/noop.js";
import { PluginRegistry } from "../src/plugins/registry.js";
import type { Plugin } from "../src/plugins/types.js";
import { insertTasks } from "../src/store/tasks.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";

// A rule is written once (src/api/fields.ts, src/field-rules.ts); these hold every validator that
// applies it to the same answer, so one cannot drift from the others again.
const registry = new PluginRegistry([noopPlugin as Plugin]);

/** The reasons a validator gave for one field ([] when it accepted the request, or said nothing of the field). */
function reasons(validate: () => unknown, field: string): string[] {
  try {
    validate();
    return [];
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    return err.violations.filter((v) => v.field === field).map((v) => v.reason);
  }
}

const list = (fields: Parameters<typeof create<typeof ListTasksRequestSchema>>[1]) => () => validateListTasks(create(ListTasksRequestSchema, fields));
const bulk = (selection: Parameters<typeof create<typeof TaskSelectionSchema>>[1], reason = "") => () =>
  validateBulkTasks(create(BulkTasksRequestSchema, { action: BulkAction.CANCEL, selection: create(TaskSelectionSchema, selection), reason }));
const createTask = (fields: Parameters<typeof create<typeof CreateTaskRequestSchema>>[1]) => () =>
  validateCreateTask(create(CreateTaskRequestSchema, { name: "n", type: "noop", ...fields }), registry);
const schedule = (name: string) => () =>
  validateScheduleSpec(create(ScheduleSpecSchema, { name, cron: "0 7 * * *", task: { type: "noop" } }), registry, new Date());

describe("times", () => {
  const refused = ["must be a time between 1970 and 9999"];
  const at = (iso: string, nanos = 0): Timestamp => ({ ...timestampFromDate(new Date(iso)), nanos });
  it.each([
    ["2030-01-02T03:04:05Z", 0, []],
    ["1970-01-01T00:00:00Z", 0, []],
    // Bulk refused the last day of 9999, which every other field accepts.
    ["9999-12-31T12:00:00Z", 0, []],
    ["9999-12-31T23:59:59Z", 0, []],
    ["1969-12-31T23:59:59Z", 0, refused],
    // Bulk and run_at took nanos outside a second.
    ["2030-01-02T03:04:05Z", -1, refused],
    ["2030-01-02T03:04:05Z", 1_000_000_000, refused],
  ] as const)("%s with nanos %i: every time field gives the same answer", (iso, nanos, expected) => {
    const ts = at(iso, nanos);
    expect(reasons(list({ createdAfter: ts }), "created_after")).toEqual(expected);
    expect(reasons(list({ createdBefore: ts }), "created_before")).toEqual(expected);
    expect(reasons(bulk({ createdAfter: ts }), "selection.created_after")).toEqual(expected);
    expect(reasons(bulk({ createdBefore: ts }), "selection.created_before")).toEqual(expected);
    expect(reasons(createTask({ runAt: ts }), "run_at")).toEqual(expected);
  });

  it("orders a range the same way in ListTasks and BulkTasks", () => {
    const range = { createdAfter: at("2030-01-02T00:00:00Z"), createdBefore: at("2030-01-01T00:00:00Z") };
    expect(reasons(list(range), "created_before")).toEqual(["must be later than created_after"]);
    expect(reasons(bulk(range), "selection.created_before")).toEqual(["must be later than created_after"]);
  });
});

describe("texts", () => {
  const long = "x".repeat(201);
  const tooLong = ["must be at most 200 characters"];
  it.each([
    ["x".repeat(200), []],
    [long, tooLong],
    ["a\u0000b", [UNSTORABLE_REASON]],
    ["a\uD800b", [UNSTORABLE_REASON]],
  ] as const)("%#: every free-text field gives the same answer", (text, expected) => {
    expect(reasons(createTask({ name: text }), "name")).toEqual(expected);
    expect(reasons(createTask({ idempotencyKey: text }), "idempotency_key")).toEqual(expected);
    expect(reasons(schedule(text), "name")).toEqual(expected);
    expect(reasons(list({ types: [text] }), "types[0]")).toEqual(expected);
    expect(reasons(list({ namePrefix: text }), "name_prefix")).toEqual(expected);
    expect(reasons(bulk({ types: [text] }), "selection.types[0]")).toEqual(expected);
    expect(reasons(bulk({ namePrefix: text }), "selection.name_prefix")).toEqual(expected);
    expect(reasons(bulk({ nameContains: text }), "selection.name_contains")).toEqual(expected);
  });

  it("requires a name and a type filter entry that is not blank", () => {
    expect(reasons(createTask({ name: "  " }), "name")).toEqual(["is required"]);
    expect(reasons(schedule("  "), "name")).toEqual(["is required"]);
    expect(reasons(list({ types: [" "] }), "types[0]")).toEqual(["must not be empty"]);
    expect(reasons(bulk({ types: [" "] }), "selection.types[0]")).toEqual(["must not be empty"]);
  });

  it("takes a reason of up to 500 characters", () => {
    expect(reasons(bulk({ all: true }, "x".repeat(500)), "reason")).toEqual([]);
    expect(reasons(bulk({ all: true }, "x".repeat(501)), "reason")).toEqual(["must be at most 500 characters"]);
    expect(reasons(bulk({ all: true }, "\u0000"), "reason")).toEqual([UNSTORABLE_REASON]);
  });
});

/** Queue names on both sides of each part of the rule. */
const QUEUE_NAMES = [
  "default", "a", "0", "9lives", "a.b-c_d", "x".repeat(64),
  "", "x".repeat(65), "-a", ".a", "_a", "A", "aB", "a b", "a/b", "a:b", "é", "a\n", "\na", "a$", "a*",
];

describe("queue names", () => {
  it("mean the same to the API, the configuration and the TypeScript pattern", () => {
    for (const name of QUEUE_NAMES) {
      const valid = QUEUE_NAME_PATTERN.test(name);
      const refusedBy = (validate: () => unknown, field: string) => reasons(validate, field).length > 0;
      expect(refusedBy(createTask({ queue: name }), "queue"), name).toBe(!valid && name !== "");
      expect(refusedBy(list({ queues: [name] }), "queues[0]"), name).toBe(!valid);
      expect(refusedBy(bulk({ queues: [name] }), "selection.queues[0]"), name).toBe(!valid);
      // TASK_QUEUES is a comma-separated list whose entries are trimmed: only names it can spell.
      if (name !== "" && name === name.trim()) {
        const config = () => loadConfig({}, { TASK_QUEUES: name });
        if (valid) expect(config().workerQueues).toEqual([name]);
        else expect(config, name).toThrow(ConfigError);
      }
    }
  });

  describe("and the database's checks (migration 0012)", () => {
    let database: TestDatabase;
    let taskId: string;
    beforeAll(async () => {
      database = await createTestDatabase();
      const [task] = await insertTasks(database.db, [
        { name: "queued", type: "noop", parameters: {}, priority: 0, maxAttempts: 1, timeoutMs: 1000, runAt: new Date(Date.now() + 3_600_000), idempotencyKey: null, requestHash: null },
      ]);
      taskId = task!.id;
    });
    afterAll(async () => database?.drop());

    /** Whether the statement succeeds; rolled back either way. */
    async function accepts(statement: ReturnType<typeof sql>): Promise<boolean> {
      const rollback = new Error("rollback");
      try {
        await database.db.kysely.transaction().execute(async (trx) => {
          await statement.execute(trx);
          throw rollback;
        });
      } catch (err) {
        if (err === rollback) return true;
        if ((err as { code?: string }).code === "23514") return false;
        throw err;
      }
      throw new Error("unreachable");
    }

    it("accept exactly the names QUEUE_NAME_PATTERN accepts", async () => {
      for (const name of QUEUE_NAMES) {
        const valid = QUEUE_NAME_PATTERN.test(name);
        expect(await accepts(sql`insert into queues (name) values (${name})`), `queues.name ${JSON.stringify(name)}`).toBe(valid);
        expect(await accepts(sql`update tasks set queue = ${name} where id = ${taskId}`), `tasks.queue ${JSON.stringify(name)}`).toBe(valid);
      }
    });
  });
});
