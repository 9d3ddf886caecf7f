import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { QueueService, WorkerService } from "../gen/task/v1/queue_pb.js";
import { TaskControlService } from "../gen/task/v1/control_pb.js";
import { ScheduleService } from "../gen/task/v1/schedule_pb.js";
import { TaskService } from "../gen/task/v1/task_pb.js";
import { TokenService } from "../gen/task/v1/token_pb.js";
import { AuditService } from "../gen/task/v1/audit_pb.js";
import { RateLimitService } from "../gen/task/v1/limit_pb.js";
import { bearerToken } from "../sdk/client.js";
import { UsageError } from "./io.js";
import { readCa } from "../tls.js";

/** Connection options shared by every command that talks to a server. */
export interface ClientOptions {
  address: string;
  token?: string;
  /** A PEM file of the CA to trust for https:// addresses (--ca). */
  ca?: string;
}

/** A TaskService client for the configured address (Connect protocol over HTTP/1.1, plain or TLS). */
export function taskClient(options: ClientOptions): Client<typeof TaskService> {
  return createClient(TaskService, transport(options));
}

/** A TaskControlService client (pause, resume, delete, bulk actions). */
export function controlClient(options: ClientOptions): Client<typeof TaskControlService> {
  return createClient(TaskControlService, transport(options));
}

/** A ScheduleService client for the configured address. */
export function scheduleClient(options: ClientOptions): Client<typeof ScheduleService> {
  return createClient(ScheduleService, transport(options));
}

/** A QueueService client for the configured address. */
export function queueClient(options: ClientOptions): Client<typeof QueueService> {
  return createClient(QueueService, transport(options));
}

/** A RateLimitService client for the configured address. */
export function limitClient(options: ClientOptions): Client<typeof RateLimitService> {
  return createClient(RateLimitService, transport(options));
}

/** A WorkerService client for the configured address. */
export function workerClient(options: ClientOptions): Client<typeof WorkerService> {
  return createClient(WorkerService, transport(options));
}

/** A TokenService client (token create/list/revoke, whoami). */
export function tokenClient(options: ClientOptions): Client<typeof TokenService> {
  return createClient(TokenService, transport(options));
}

/** An AuditService client (task-cli audit). */
export function auditClient(options: ClientOptions): Client<typeof AuditService> {
  return createClient(AuditService, transport(options));
}

function transport(options: ClientOptions): Transport {
  let url: URL;
  try {
    url = new URL(options.address);
  } catch {
    throw new UsageError(`--address: "${options.address}" is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--address: must be http:// or https://`);
  const interceptors: Interceptor[] = [];
  if (options.token) interceptors.push(bearerToken(options.token));
  const ca = url.protocol === "https:" ? readCa(options.ca) : undefined;
  return createConnectTransport({ baseUrl: url.toString().replace(/\/$/, ""), httpVersion: "1.1", interceptors, ...(ca ? { nodeOptions: { ca } } : {}) });
}
