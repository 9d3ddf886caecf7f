import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { TaskService } from "../src/gen/task/v1/task_pb.js";
import { useServerProcesses } from "./helpers/server-process.js";

// unique_while across real API processes: the key's lock is in PostgreSQL, not in a process.

const processes = useServerProcesses();

describe("unique_while across API server processes", () => {
  it("three servers given 30 concurrent creates of one key make one task, and all answer with it", async () => {
    const servers = await Promise.all([processes.start(), processes.start(), processes.start()]);
    const clients = servers.map((s) => createClient(TaskService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" })));
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        clients[i % clients.length]!.createTask({ name: `racer-${i}`, type: "noop", key: "one-key", uniqueWhile: { mode: { case: "unfinished", value: true } } }),
      ),
    );
    expect(responses.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(responses.map((r) => r.task!.id)).size).toBe(1);
    const rows = await processes.database.db.kysely.selectFrom("tasks").select("id").where("key", "=", "one-key").execute();
    expect(rows.map((r) => r.id)).toEqual([String(responses[0]!.task!.id)]);
  });
});
