import type { Client } from "@connectrpc/connect";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { errorMappingInterceptor } from "../../src/api/routes.js";
import { createScheduleService } from "../../src/api/schedule-service.js";
import { loadConfig } from "../../src/config.js";
import { ScheduleService } from "../../src/gen/task/v1/schedule_pb.js";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import type { DurationSchema } from "@bufbuild/protobuf/wkt";
import type { CatchUpPolicy, OverlapPolicy } from "../../src/gen/task/v1/schedule_pb.js";
import { builtinPlugins, type BuiltinPlugins } from "../../src/plugins/builtin.js";
import { Scheduler, type Clock, type SchedulerDeps } from "../../src/schedules/scheduler.js";
import type { TestDatabase } from "./database.js";

/** A clock a test sets and moves by hand. */
export class FakeClock implements Clock {
  private at: Date;
  constructor(iso: string) {
    this.at = new Date(iso);
  }
  now(): Date {
    return new Date(this.at);
  }
  set(iso: string | Date): void {
    this.at = new Date(iso);
  }
  advance(ms: number): void {
    this.at = new Date(this.at.getTime() + ms);
  }
}

/** A ScheduleService client over a real HTTP server. */
export function scheduleClientFor(baseUrl: string): Client<typeof ScheduleService> {
  return createClient(ScheduleService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
}

/** ScheduleService handlers on a test database, in memory, on a clock the test controls, plus schedulers on the same clock. */
export interface ScheduleHarness {
  client: Client<typeof ScheduleService>;
  plugins: BuiltinPlugins;
  scheduler(extra?: Partial<SchedulerDeps>): Scheduler;
  close(): Promise<void>;
}

/** Builds a harness; shell is enabled so templates can be checked in commands. */
export function scheduleHarness(database: TestDatabase, clock: Clock): ScheduleHarness {
  const config = loadConfig({ enableShell: true }, {});
  const plugins = builtinPlugins(config, database.logger);
  const transport = createRouterTransport(
    (router) => router.service(ScheduleService, createScheduleService({ db: database.db, registry: plugins.registry, logger: database.logger, clock })),
    { router: { interceptors: [errorMappingInterceptor(database.logger)] } },
  );
  return {
    client: createClient(ScheduleService, transport),
    plugins,
    scheduler: (extra = {}) => new Scheduler({ db: database.db, registry: plugins.registry, logger: database.logger, clock, ...extra }),
    close: () => plugins.close(),
  };
}

/** A schedule spec as the generated client accepts it. */
export interface SpecInit {
  name?: string;
  cron?: string;
  timeZone?: string;
  task?: { type?: string; parameters?: JsonObject; priority?: number; maxAttempts?: number; timeout?: MessageInitShape<typeof DurationSchema> };
  paused?: boolean;
  catchUp?: CatchUpPolicy;
  backfillLimit?: number;
  overlap?: OverlapPolicy;
}

/**
 * A schedule spec: a noop every minute in UTC, with overrides on top. Overrides may be a received
 * ScheduleSpec message: it is turned back into a plain init object so nested overrides are too.
 */
export function scheduleSpec(overrides: SpecInit = {}): SpecInit {
  const { $typeName: _type, $unknown: _unknown, ...plain } = overrides as SpecInit & { $typeName?: string; $unknown?: unknown };
  return { name: "every-minute", cron: "* * * * *", timeZone: "UTC", task: { type: "noop" }, ...plain };
}

/** The tasks a schedule created, by tick. */
export async function scheduleTasks(database: TestDatabase, scheduleId: bigint | string) {
  const { rows } = await database.db.pool.query<{ id: string; scheduled_at: Date; status: string; parameters: Record<string, unknown>; created_at: Date }>(
    "select id, scheduled_at, status, parameters, created_at from tasks where schedule_id = $1 order by scheduled_at, id",
    [String(scheduleId)],
  );
  return rows;
}
