import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { runCli } from "./helpers/cli.js";
import { startServerProcess, type ServerProcess } from "./helpers/server-process.js";

const ADMIN = "admin-secret-for-the-audit-cli";
const OPERATOR = "operator-secret-for-the-audit-cli";
let database: TestDatabase;
let server: ServerProcess;

beforeAll(async () => {
  database = await createTestDatabase();
  server = await startServerProcess(database.url, ["server", "--port", "0"], { TASK_API_TOKENS: `boss:admin:${ADMIN},ci:operator:${OPERATOR}` });
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await database?.drop();
});

const cli = (token: string, ...args: string[]) => runCli(["--address", server.url, "--token", token, ...args]);

describe("task-cli audit against a server process", () => {
  it("lists who did what with filters and -o json, exports NDJSON, and refuses a non-admin", async () => {
    const created = await cli(OPERATOR, "-o", "json", "task", "create", "audited-by-cli", "--type", "noop");
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).task.id as string;
    const cancelled = await cli(OPERATOR, "task", "cancel", "--id", id, "--reason", "not needed");
    expect(cancelled.code, cancelled.stderr).toBe(0);
    const history = await cli(ADMIN, "history", "--id", id);
    expect(history.stdout).toContain("cancelled by ci (operator): not needed");

    const table = await cli(ADMIN, "audit", "--actor", "ci", "--action", "cancel", "--since", "1h");
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`ci\\s+operator\\s+cancel\\s+task ${id}\\s+not needed\\s+127\\.0\\.0\\.1`));
    expect(table.stdout).not.toMatch(/\screate\s/);

    const json = await cli(ADMIN, "-o", "json", "audit", "--actor", "ci");
    expect(json.code, json.stderr).toBe(0);
    const events = JSON.parse(json.stdout).events as { action: string; actor: string; resources: { tasks: string[] }; requestId: string }[];
    expect(events.map((e) => e.action)).toEqual(["cancel", "create"]);
    expect(events.every((e) => e.actor === "ci" && e.resources.tasks[0] === id && e.requestId !== "")).toBe(true);

    // Nothing yet in the future: an empty list, said so.
    const none = await cli(ADMIN, "audit", "--since", "2999-01-01T00:00:00Z");
    expect(none.stdout.trim()).toBe("no audit events");

    const exported = await cli(ADMIN, "audit", "--export", "--actor", "ci");
    expect(exported.code, exported.stderr).toBe(0);
    const lines = exported.stdout.trim().split("\n").map((l) => JSON.parse(l) as { action: string });
    expect(lines.map((l) => l.action)).toEqual(["cancel", "create"]);

    const refused = await cli(OPERATOR, "audit");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/PermissionDenied.*requires role admin; token ci has operator/);
    const refusedExport = await cli(OPERATOR, "audit", "--export");
    expect(refusedExport.code).toBe(1);
    expect(refusedExport.stderr).toMatch(/403/);

    const bad = await cli(ADMIN, "audit", "--since", "yesterday");
    expect(bad.code).toBe(2);
  });
});
