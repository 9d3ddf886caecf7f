import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { sql, type Kysely } from "kysely";
import { TaskControlService } from "../../src/gen/task/v1/control_pb.js";
import { QueueService, WorkerService } from "../../src/gen/task/v1/queue_pb.js";
import { ScheduleService } from "../../src/gen/task/v1/schedule_pb.js";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import { TokenService } from "../../src/gen/task/v1/token_pb.js";
import { AuditService } from "../../src/gen/task/v1/audit_pb.js";
import { AgentService } from "../../src/gen/task/v1/agent_pb.js";
import { RateLimitService } from "../../src/gen/task/v1/limit_pb.js";
import type { Database } from "../../src/store/schema.js";
import { bearerToken } from "../../src/sdk/client.js";

// What the role and token tests share: the server's configured tokens, clients of every service
// over Connect or gRPC presenting a token, and a digest of what a refused call must leave alone.

/** The TASK_API_TOKENS of the server under test: a plain (legacy) entry and one named entry per role. */
export const TOKENS = { legacy: "legacy-secret", reader: "reader-secret-0123456789", operator: "operator-secret-0123456789", admin: "admin-secret-0123456789" };
export const CONFIGURED = [TOKENS.legacy, `ro:reader:${TOKENS.reader}`, `op:operator:${TOKENS.operator}`, `boss:admin:${TOKENS.admin}`];
export const NAMES = { reader: "ro", operator: "op", admin: "boss" } as const;
export type RoleName = keyof typeof NAMES;

export const protocols = {
  connect: (url: string, interceptors: Interceptor[]) => createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors }),
  grpc: (url: string, interceptors: Interceptor[]) => createGrpcTransport({ baseUrl: url, interceptors }),
};

/** Clients of every API service, over one protocol, presenting one token (none: no header). */
export function clients(transport: Transport) {
  return {
    task: createClient(TaskService, transport),
    control: createClient(TaskControlService, transport),
    queue: createClient(QueueService, transport),
    worker: createClient(WorkerService, transport),
    schedule: createClient(ScheduleService, transport),
    token: createClient(TokenService, transport),
    audit: createClient(AuditService, transport),
    agent: createClient(AgentService, transport),
    limit: createClient(RateLimitService, transport),
  };
}
export type Clients = ReturnType<typeof clients>;
/** Clients of every service at `url`, over `protocol`, presenting `token` (undefined: no header). */
export function clientsAs(url: string, token: string | undefined, protocol: keyof typeof protocols = "connect"): Clients {
  return clients(protocols[protocol](url, token === undefined ? [] : [bearerToken(token)]));
}

/** Everything a refused call must leave alone, as one digest per table. */
export async function snapshot(db: Kysely<Database>) {
  const { rows } = await sql<Record<string, string | null>>`
    select
      (select md5(coalesce(string_agg(id::text || status::text || updated_at::text, ',' order by id), '')) from tasks) as tasks,
      (select count(*)::text from task_history) as history,
      (select count(*)::text from graphile_worker.jobs) as jobs,
      (select md5(coalesce(string_agg(name || paused::text || updated_at::text, ',' order by name), '')) from schedules) as schedules,
      (select md5(coalesce(string_agg(name || paused::text || coalesce(concurrency, -1)::text, ',' order by name), '')) from queues) as queues,
      (select md5(coalesce(string_agg(name || coalesce(revoked_at::text, ''), ',' order by name), '')) from api_tokens) as tokens,
      (select md5(coalesce(string_agg(name || rate::text || burst::text || updated_at::text, ',' order by name), '')) from rate_limits) as rate_limits
  `.execute(db);
  return rows[0];
}

/** Reads a server stream until it ends or `ms` pass; a stream that is still open then counts as answered. */
export async function drain(stream: AsyncIterable<unknown>, ac: AbortController, ms = 300): Promise<void> {
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    for await (const _ of stream) break;
  } catch (err) {
    if (!(ac.signal.aborted && ConnectError.from(err).code === Code.Canceled)) throw err;
  } finally {
    clearTimeout(timer);
  }
}

