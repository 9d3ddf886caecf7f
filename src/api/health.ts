import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { sql, type Kysely } from "kysely";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { TaskService } from "../gen/task/v1/task_pb.js";
import type { Database } from "../store/schema.js";

/** How often Watch re-checks. */
const WATCH_INTERVAL_MS = 5_000;

/**
 * grpc.health.v1: the server ("" ) and TaskService are SERVING while PostgreSQL answers, NOT_SERVING
 * otherwise, the same rule as /readyz, so gRPC probes and HTTP probes agree.
 */
export function createHealthService(db: Kysely<Database>): ServiceImpl<typeof Health> {
  const services = ["", TaskService.typeName];
  const status = async (): Promise<Status> => {
    try {
      await sql`select 1`.execute(db);
      return Status.SERVING;
    } catch {
      return Status.NOT_SERVING;
    }
  };
  return {
    async check(req) {
      if (!services.includes(req.service)) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      return { status: await status() };
    },
    async list() {
      const current = await status();
      return { statuses: Object.fromEntries(services.map((s) => [s, { status: current }])) };
    },
    async *watch(req, ctx) {
      if (!services.includes(req.service)) {
        yield { status: Status.SERVICE_UNKNOWN };
        return;
      }
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const current = await status();
        if (current !== last) yield { status: current };
        last = current;
        await sleep(WATCH_INTERVAL_MS, undefined, { signal: ctx.signal }).catch(() => undefined);
      }
    },
  };
}
