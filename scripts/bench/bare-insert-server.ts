/**
 * The baseline for single CreateTask calls: a bare Connect unary handler on the same stack
 * (connect-node on node:http, pg) that does one INSERT per call and nothing else (no validation,
 * no history row, no job, no interceptors). Run as its own process by the benchmark; prints
 * "listening on <url>" and serves until SIGTERM.
 */
import http from "node:http";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import pg from "pg";
import { TaskSchema, TaskService } from "../../src/gen/task/v1/task_pb.js";

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_SIZE ?? 10) });
await pool.query(`create table if not exists bench_bare_inserts (
  id bigint generated always as identity primary key, name text not null, type text not null,
  parameters jsonb not null default '{}', created_at timestamptz not null default now())`);

const routes = (router: ConnectRouter) =>
  router.service(TaskService, {
    async createTask(req) {
      const { rows } = await pool.query<{ id: string; created_at: Date }>(
        "insert into bench_bare_inserts (name, type, parameters) values ($1, $2, $3) returning id, created_at",
        [req.name, req.type, JSON.stringify(req.parameters ?? {})],
      );
      return { task: create(TaskSchema, { id: BigInt(rows[0]!.id), name: req.name, type: req.type, createdAt: timestampFromDate(rows[0]!.created_at) }), created: true };
    },
  });

const server = http.createServer(connectNodeAdapter({ routes }));
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
});
process.once("SIGTERM", () => {
  server.close();
  server.closeAllConnections();
  void pool.end().then(() => process.exit(0));
});
