import { readdir, readFile } from "node:fs/promises";
import { FINISHED_TASK_STATUSES } from "../src/finished-statuses.js";
import { statusToProto } from "../src/api/convert.js";
import { FINISHED_STATUSES } from "../src/store/lifecycle/states.js";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The lifecycle has one owner (src/store/lifecycle/): no other file in src/ writes a task's status
 * or the task history, creates or deletes tasks. The scan reads the code as text, lower-cased with
 * whitespace collapsed, so raw SQL and Kysely calls are caught however they are spelled.
 */

const OWNER = path.join("store", "lifecycle") + path.sep;

/** Collapses whitespace and case, and drops identifier quotes and a `public.` schema. */
function normalise(text: string): string {
  return text.toLowerCase().replace(/\s+/g, " ").replace(/"(\w+)"/g, "$1").replace(/\bpublic\./g, "");
}

/** `status = ...` as an item of a SET list (at its start or after a comma), optionally qualified. */
const SETS_STATUS = /(?:^|,)\s*(?:\w+\.)?status\s*=[^=]/;

/** What in `text` writes a task's status or its history (empty: nothing). */
export function lifecycleWrites(text: string): string[] {
  const s = normalise(text);
  const found: string[] = [];
  const rules: [string, RegExp][] = [
    ["writes task_history (SQL)", /\b(?:insert into|update|delete from|merge into|copy|truncate(?: table)?) task_history\b/],
    ["writes task_history (Kysely)", /\b(?:insertinto|updatetable|deletefrom|mergeinto|replaceinto)\(\s*["'`]?task_history(?:\s+as\s+\w+)?\b/],
    ["creates or deletes tasks (SQL)", /\b(?:insert into|delete from|merge into|copy|truncate(?: table)?) tasks\b/],
    ["creates or deletes tasks (Kysely)", /\b(?:insertinto|deletefrom|mergeinto|replaceinto)\(\s*["'`]?tasks(?:\s+as\s+\w+)?(?:["'`]|\s*\))/],
    // The statement builder (transition, mark) is the owner's own: a SET list handed to it elsewhere would be a writer.
    ["uses the lifecycle's statement builder", /\bfrom ["'`][./\w-]*lifecycle\/statement(?:\.js)?["'`]/],
  ];
  for (const [what, rule] of rules) if (rule.test(s)) found.push(what);
  // SQL: every `update tasks [alias] set <list>`: the list up to its end (where, from, returning, the end of the JS string).
  for (const m of s.matchAll(/\bupdate (?:only )?tasks(?: as)?(?: (?!set\b)\w+)? set (.*?)(?=\bwhere\b|\bfrom\b|\breturning\b|[`"]|$)/g)) {
    if (SETS_STATUS.test(m[1]!)) found.push("sets status (SQL)");
  }
  // Kysely: updateTable("tasks") ... .set(...) naming status, in an object, as a column name, or in a callback.
  for (const m of s.matchAll(/\bupdatetable\(\s*["'`]?tasks(?:\s+as\s+\w+)?["'`]?\s*\)(.{0,600})/g)) {
    const chain = m[1]!.split(/\.execute\w*\(/)[0]!;
    // Each .set(...)'s arguments, up to the next call of the chain.
    const args = chain.split(".set(").slice(1).map((a) => a.split(/\)\s*\.(?:where|returning|from|top|limit|orderby|modifyend|output)\b/)[0]!);
    if (args.some((a) => /^\s*["'`]?status["'`]?\s*,|[{,]\s*status\s*[:,}]|\bstatus\s*:/.test(a))) found.push("sets status (Kysely)");
  }
  return [...new Set(found)];
}

describe("one owner of the lifecycle", () => {
  it("recognises status and history writes however they are spelled", () => {
    const writes = [
      "insert into task_history (task_id, status) values (1, 'queued')",
      "INSERT\n   INTO  task_history(task_id)",
      'insert into "task_history" (task_id)',
      "insert into public.task_history select * from x",
      "db.insertInto('task_history').values({})",
      'db.insertInto(\n  "task_history"\n)',
      "update tasks set status = 'failed' where id = 1",
      "UPDATE tasks\n SET finished_at = now(),\n   status='failed'",
      "update tasks t set heartbeat_at = now(), t.status = 'running' from x",
      'update "tasks" set "status" = $1',
      "sql`update tasks set ${sets}, status = ${s}::task_status where id = ${id}`",
      'db.updateTable("tasks").set({ status: "failed" }).where("id", "=", id).execute()',
      "db.updateTable('tasks')\n  .set({\n    finished_at: new Date(),\n    status,\n  })\n  .execute()",
      'db.updateTable("tasks").set("status", "failed").execute()',
      'db.updateTable("tasks").set((eb) => ({ status: eb.val("failed") })).execute()',
      "delete from tasks where id = 1",
      'db.deleteFrom("tasks").where("id", "=", id)',
      "insert into tasks (name, type) values ('a', 'noop')",
      "db.insertInto(\"tasks\").values(row)",
      "delete from task_history where task_id = 1",
      'import { transition } from "../store/lifecycle/statement.js";',
    ];
    for (const text of writes) expect(lifecycleWrites(text), text).not.toEqual([]);
    const reads = [
      "select status from tasks where status = 'running'",
      "update tasks set heartbeat_at = now() where status = 'running' and worker_id = $1",
      "update tasks set paused_from = status where id = 1",
      "update tasks set cancel_requested_at = now(), cancel_reason = $1 where status in ('queued')",
      "select * from task_history where task_id = $1",
      'db.updateTable("schedules").set({ status: "x" }).execute()',
      'db.updateTable("tasks").set({ priority: 3 }).where("status", "=", "queued").execute()',
      'db.selectFrom("task_history").selectAll()',
      "update task_watchers set expires_at = now()",
      "update tasks_archive set status = 'x'",
    ];
    for (const text of reads) expect(lifecycleWrites(text), text).toEqual([]);
  });

  it("no file in src/ outside src/store/lifecycle/ writes a task's status or task_history", async () => {
    const dir = path.resolve("src");
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith(".ts") && !f.startsWith(`gen${path.sep}`));
    expect(files.length).toBeGreaterThan(50);
    const writers: Record<string, string[]> = {};
    const owners: string[] = [];
    for (const file of files) {
      const found = lifecycleWrites(await readFile(path.join(dir, file), "utf8"));
      if (found.length === 0) continue;
      if (file.startsWith(OWNER)) owners.push(file);
      else writers[file] = found;
    }
    expect(writers).toEqual({});
    // The owner is where the writes are (so the scan sees them at all): statement.ts builds every
    // update and history row; create.ts inserts tasks, control.ts deletes them.
    expect(owners.sort()).toEqual(["control.ts", "create.ts", "statement.ts"].map((f) => OWNER + f));
  });
});

describe("the finished statuses", () => {
  it("the clients' copy (src/finished-statuses.ts) names the lifecycle's finished statuses, no more, no fewer", () => {
    expect([...FINISHED_TASK_STATUSES].sort()).toEqual(FINISHED_STATUSES.map(statusToProto).sort());
  });
});
