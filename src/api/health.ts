import { EventEmitter, once } from "node:events";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { sql, type Kysely } from "kysely";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { TaskService } from "../gen/task/v1/task_pb.js";
import type { Database } from "../store/schema.js";
import { cachedFor } from "./cached.js";

/** How often the shared watch poll re-checks. */
const WATCH_INTERVAL_MS = 5_000;
/** Check and List within this of each other share one database round trip. */
const CHECK_CACHE_MS = 1_000;

/** Limits of the health service. */
export interface HealthOptions {
  /** Open Watch streams allowed (they need no token); further ones get ResourceExhausted. */
  maxWatchers: number;
  /** How often the shared poll behind Watch runs. */
  watchIntervalMs?: number;
}

/**
 * The database's serving status for every health caller: Check and List share a one-second cache,
 * and all Watch streams share ONE poll that runs only while someone watches, so thousands of
 * unauthenticated watchers cost one query every few seconds, not one each.
 */
class HealthMonitor {
  private watchers = 0;
  private last: Status | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Emits "change"; every watcher listens, so no listener limit. */
  private readonly changes = new EventEmitter().setMaxListeners(0);
  readonly check: () => Promise<Status>;

  constructor(
    db: Kysely<Database>,
    private readonly options: HealthOptions,
  ) {
    this.check = cachedFor(CHECK_CACHE_MS, async () => {
      try {
        await sql`select 1`.execute(db);
        return Status.SERVING;
      } catch {
        return Status.NOT_SERVING;
      }
    });
  }

  /** Registers a watcher, or refuses when the cap is reached; call the returned function when it leaves. */
  join(): () => void {
    if (this.watchers >= this.options.maxWatchers) {
      throw new ConnectError(`too many health watchers (at most ${this.options.maxWatchers}); use Check`, Code.ResourceExhausted);
    }
    if (this.watchers++ === 0) this.poll();
    let left = false;
    return () => {
      if (left) return;
      left = true;
      if (--this.watchers === 0) clearTimeout(this.timer);
    };
  }

  /** Resolves when the status changes, or the signal aborts (its listener is then removed). */
  nextChange(signal: AbortSignal): Promise<void> {
    return once(this.changes, "change", { signal }).then(
      () => undefined,
      () => undefined,
    );
  }

  private poll(): void {
    void this.check().then((status) => {
      if (status !== this.last) {
        this.last = status;
        this.changes.emit("change");
      }
      if (this.watchers > 0) this.timer = setTimeout(() => this.poll(), this.options.watchIntervalMs ?? WATCH_INTERVAL_MS);
    });
  }
}

/**
 * grpc.health.v1: the server ("" ) and TaskService are SERVING while PostgreSQL answers, NOT_SERVING
 * otherwise, the same rule as /readyz, so gRPC probes and HTTP probes agree.
 */
export function createHealthService(db: Kysely<Database>, options: HealthOptions): ServiceImpl<typeof Health> {
  const services = ["", TaskService.typeName];
  const monitor = new HealthMonitor(db, options);
  return {
    async check(req) {
      if (!services.includes(req.service)) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      return { status: await monitor.check() };
    },
    async list() {
      const current = await monitor.check();
      return { statuses: Object.fromEntries(services.map((s) => [s, { status: current }])) };
    },
    async *watch(req, ctx) {
      if (!services.includes(req.service)) {
        yield { status: Status.SERVICE_UNKNOWN };
        return;
      }
      const leave = monitor.join();
      try {
        let last: Status | undefined;
        while (!ctx.signal.aborted) {
          const current = await monitor.check();
          if (current !== last) yield { status: current };
          last = current;
          await monitor.nextChange(ctx.signal);
        }
      } finally {
        leave();
      }
    },
  };
}
