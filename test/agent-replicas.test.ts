import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { sql } from "kysely";
import { describe, expect, it } from "vitest";
import { loadTasksWithHistory } from "../scripts/chaos/audit.js";
import { checkTaskHistory } from "../scripts/chaos/check-history.js";
import { TaskService } from "../src/gen/task/v1/task_pb.js";
import { Role, TokenService } from "../src/gen/task/v1/token_pb.js";
import { bearerToken } from "../src/sdk/client.js";
import { closedPort } from "./helpers/ports.js";
import { spawnCli, type CliProcess } from "./helpers/process.js";
import { startServerProcess, useServerProcesses, type ServerProcess } from "./helpers/server-process.js";
import { waitFor } from "./helpers/wait.js";

// Agents across control-plane replicas (issue 26, item 6): two `task-cli server` processes on one
// database, three `task-cli agent` processes each given both addresses, and a kill -9 of the replica
// most of them stream from while they run tasks. The agents move to the other replica; every task
// ends SUCCEEDED once, with a legal history, as the database shows.

const ADMIN = "replicas-admin-secret-0123456789";
const serverEnv = {
  TASK_API_TOKENS: `boss:admin:${ADMIN}`,
  TASK_ENABLE_SHELL: "true",
  TASK_LEASE_MS: "4000",
  TASK_HEARTBEAT_MS: "500",
  TASK_RECONCILE_INTERVAL_MS: "1000",
  TASK_BACKOFF_BASE_MS: "100",
  TASK_BACKOFF_MAX_MS: "1000",
};

const procs = useServerProcesses();

/** The agents whose Assignments stream is open on a replica now, from its log (LOG_LEVEL info). */
function streamsOn(replica: ServerProcess, since = 0): Set<string> {
  const open = new Set<string>();
  for (const line of replica.proc.output().slice(since).split("\n")) {
    const m = /"agentId":"([^"]+)".*"msg":"agent stream (opened|closed)"/.exec(line);
    if (m) (m[2] === "opened" ? open.add(m[1]!) : open.delete(m[1]!));
  }
  return open;
}

describe("agents given two replicas' addresses", () => {
  it("move to the other replica when theirs is killed under load: nothing lost, nothing recorded twice", async () => {
    const { database } = procs;
    const ports = [await closedPort(), await closedPort()];
    const replicas = await Promise.all(ports.map((p) => procs.start(["server", "--port", String(p)], serverEnv)));
    // No database worker: the replicas themselves rescue lost attempts (src/api/upkeep.ts).
    const transport = (url: string) => createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [bearerToken(ADMIN)] });
    const { secret } = await createClient(TokenService, transport(replicas[0]!.url)).createToken({ name: "replicas", role: Role.AGENT });
    const servers = replicas.map((r) => r.url).join(",");
    const agents: CliProcess[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        // No DATABASE_URL: an agent knows only the replicas' addresses and its token.
        agents.push(spawnCli(["agent", "--server", servers, "--name", `mover-${i}`, "-n", "4", "--enable-shell"], { TASK_TOKEN: secret, LOG_LEVEL: "info" }));
      }
      await waitFor(() => streamsOn(replicas[0]!).size + streamsOn(replicas[1]!).size >= 3 || undefined, "the three agents' streams to open", 60_000);

      const total = 120;
      const tasks = Array.from({ length: total }, (_, i) => ({ name: `mover-${i}`, type: "shell", maxAttempts: 5, parameters: { command: `sleep 0.${3 + (i % 7)}; echo done ${i}` } }));
      // The victim is the replica with more agents' streams (two or three of the three).
      const load = replicas.map((r) => streamsOn(r).size);
      const victim = load[0]! >= load[1]! ? 0 : 1;
      const survivor = replicas[1 - victim]!;
      const moved = streamsOn(replicas[victim]!);
      const client = createClient(TaskService, transport(survivor.url));
      await client.createTasks({ tasks });
      await waitFor(async () => ((await database.db.pool.query("select count(*)::int as n from tasks where status = 'running'")).rows[0].n >= 6) || undefined, "the agents to run tasks");

      const mark = survivor.proc.output().length;
      await replicas[victim]!.kill();
      // Every agent that streamed from the dead replica opens its stream on the survivor.
      await waitFor(() => [...moved].every((id) => streamsOn(survivor, mark).has(id)) || undefined, `agents ${[...moved].join(", ")} to move to the other replica`, 30_000);
      // The replica comes back on its address; the agents keep working wherever they are.
      const back = await startServerProcess(database.url, ["server", "--port", String(ports[victim])], serverEnv);
      try {
        await waitFor(async () => {
          const { rows } = await database.db.pool.query("select count(*)::int as n from tasks where name like 'mover-%' and status in ('succeeded', 'failed', 'cancelled')");
          return rows[0].n === total || undefined;
        }, "every task to finish", 90_000);
      } finally {
        await back.stop();
      }

      const audited = await loadTasksWithHistory(database.db.kysely, "mover-");
      expect(audited).toHaveLength(total);
      expect(audited.flatMap((t) => checkTaskHistory(t))).toEqual([]);
      expect(audited.filter((t) => t.status !== "succeeded").map((t) => `${t.id} ${t.status} ${t.last_error}`)).toEqual([]);
      // One outcome per task, and the succeeded attempt's output once, in order (nothing resent twice across the move).
      const { rows: outcomes } = await sql<{ n: number }>`select count(*)::int as n from task_history h join tasks t on t.id = h.task_id where t.name like 'mover-%' and h.status = 'succeeded'`.execute(database.db.kysely);
      expect(outcomes[0]!.n).toBe(total);
      const { rows: output } = await sql<{ name: string; text: string }>`
        select t.name, string_agg(l.lines, E'\n' order by l.first_seq) as text
        from tasks t join task_logs l on l.task_id = t.id and l.attempt = t.attempts
        where t.name like 'mover-%' group by t.name`.execute(database.db.kysely);
      expect(output).toHaveLength(total);
      expect(output.filter((o) => o.text !== `done ${o.name.slice("mover-".length)}`)).toEqual([]);
    } finally {
      for (const a of agents) if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill("SIGKILL");
    }
  }, 240_000);
});
