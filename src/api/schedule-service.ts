import type { ServiceImpl } from "@connectrpc/connect";
import { InvalidArgumentError, ScheduleNotFoundError } from "../errors.js";
import { ScheduleService } from "../gen/task/v1/schedule_pb.js";
import type { Logger } from "../logger.js";
import type { Config } from "../config.js";
import type { TaskTypeCatalog } from "../plugins/catalog.js";
import type { PluginRegistry } from "../plugins/registry.js";
import { catalogFor } from "./task-service.js";
import { shellCheckerFor, type ShellChecker } from "./shell-check.js";
import { CronSchedule } from "../schedules/cron.js";
import { systemClock, type Clock } from "../schedules/scheduler.js";
import { tickTask } from "../schedules/tick-task.js";
import type { Db } from "../store/db.js";
import {
  deleteSchedule,
  findSchedule,
  findTickTask,
  insertSchedule,
  listSchedules,
  recordManualRun,
  replaceSchedule,
  setSchedulePaused,
  type NewSchedule,
} from "../store/schedules.js";
import { insertTasksInTransaction } from "../store/tasks.js";
import { audited, recordAudit } from "../store/audit.js";
import { auditActorOf } from "./audit-context.js";
import { taskToProto } from "./convert.js";
import { scheduleToProto } from "./schedule-convert.js";
import { validateScheduleName, validateScheduleSpec } from "./schedule-validate.js";

/** What the schedule handlers need. */
export interface ScheduleServiceDeps {
  db: Db;
  registry: PluginRegistry;
  /** The task types registered in PostgreSQL; built over `registry` when not given. */
  catalog?: TaskTypeCatalog;
  config?: Partial<Pick<Config, "leaseMs" | "maxBatchSize" | "shellCheckTimeoutMs" | "shellCheckConcurrency" | "shellCheckWaitMs" | "shellcheck">>;
  logger: Logger;
  /** Where "now" comes from for first ticks and triggers; the scheduler's clock in tests. */
  clock?: Clock;
  /** Checks a shell template's command (bash -n), as CreateTask does; made from `config` when absent. */
  shellChecker?: ShellChecker;
}

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;
const PAGE_TOKEN_PREFIX = "s1:";

/** A schedule's settings as its audit row stores them (not its template's parameters, which may hold secrets). */
function scheduleParameters(s: NewSchedule): Record<string, unknown> {
  return { cron: s.cron, timeZone: s.timeZone, type: s.type, priority: s.priority, paused: s.paused, catchUp: s.catchUp, overlap: s.overlap };
}

/** The ScheduleService handlers: validate, call the store, convert. Errors are mapped by an interceptor. */
export function createScheduleService(deps: ScheduleServiceDeps): ServiceImpl<typeof ScheduleService> {
  const { db: pair, clock = systemClock } = deps;
  const db = pair.kysely;
  const catalog = catalogFor({ ...deps, config: { maxBatchSize: 0, ...deps.config } });
  const shellChecker = deps.shellChecker ?? shellCheckerFor(deps.config ?? {}, deps.logger);
  /** A shell template's command must parse, or every tick would make a task that fails (warnings are not kept). */
  const checkTemplate = async (schedule: NewSchedule) => {
    if (schedule.type === "shell") await shellChecker.checkAll([{ command: String(schedule.parameters.command), field: "task.parameters.command", strict: false }]);
  };

  async function existing(name: string) {
    const row = await findSchedule(db, validateScheduleName(name));
    if (!row) throw new ScheduleNotFoundError(name);
    return row;
  }

  /** The first tick after now of a stored schedule (for resume). */
  function nextTick(row: { cron: string; time_zone: string }): Date | null {
    return new CronSchedule(row.cron, row.time_zone).next(clock.now()) ?? null;
  }

  return {
    async createSchedule(req, ctx) {
      const { schedule, nextRunAt } = await catalog.withTypes([req.spec?.task?.type ?? ""], (types) => validateScheduleSpec(req.spec, types, clock.now()));
      await checkTemplate(schedule);
      const row = await audited(db, auditActorOf(ctx), (trx) => insertSchedule(trx, schedule, nextRunAt), () => ({ action: "schedule_create", resources: { schedule: schedule.name }, parameters: scheduleParameters(schedule) }));
      return { schedule: scheduleToProto(row) };
    },

    async getSchedule(req) {
      return { schedule: scheduleToProto(await existing(req.name)) };
    },

    async listSchedules(req) {
      if (req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) {
        throw InvalidArgumentError.of("page_size", `must be between 1 and ${MAX_PAGE_SIZE} (0 for ${DEFAULT_PAGE_SIZE})`);
      }
      let after: string | undefined;
      if (req.pageToken !== "") {
        const text = Buffer.from(req.pageToken, "base64url").toString("utf8");
        if (!text.startsWith(PAGE_TOKEN_PREFIX)) throw InvalidArgumentError.of("page_token", "is malformed");
        after = text.slice(PAGE_TOKEN_PREFIX.length);
      }
      const pageSize = req.pageSize || DEFAULT_PAGE_SIZE;
      const rows = await listSchedules(db, after, pageSize + 1);
      const page = rows.slice(0, pageSize);
      const more = rows.length > pageSize;
      return {
        schedules: page.map(scheduleToProto),
        nextPageToken: more ? Buffer.from(`${PAGE_TOKEN_PREFIX}${page.at(-1)!.name}`).toString("base64url") : "",
      };
    },

    async updateSchedule(req, ctx) {
      const name = validateScheduleName(req.name);
      const { schedule, nextRunAt } = await catalog.withTypes([req.spec?.task?.type ?? ""], (types) => validateScheduleSpec(req.spec, types, clock.now()));
      await checkTemplate(schedule);
      const result = await audited(db, auditActorOf(ctx), async (trx) => {
        const replaced = await replaceSchedule(trx, name, schedule, nextRunAt);
        if (!replaced) throw new ScheduleNotFoundError(name);
        return replaced;
      }, (r) => ({ action: "schedule_update", resources: { schedule: name }, parameters: { ...scheduleParameters(schedule), changed: r.changed } }));
      const view = await findSchedule(db, result.row.name);
      return { schedule: scheduleToProto(view ?? result.row), changed: result.changed };
    },

    async pauseSchedule(req, ctx) {
      const name = validateScheduleName(req.name);
      const row = await audited(db, auditActorOf(ctx), async (trx) => {
        const paused = await setSchedulePaused(trx, name, true, null);
        if (!paused) throw new ScheduleNotFoundError(name);
        return paused;
      }, () => ({ action: "schedule_pause", resources: { schedule: name } }));
      return { schedule: scheduleToProto((await findSchedule(db, row.name)) ?? row) };
    },

    async resumeSchedule(req, ctx) {
      const current = await existing(req.name);
      // Ticks that passed while paused are dropped: the schedule restarts from its next tick.
      // Resuming a running schedule changes nothing, so it is not audited.
      const row = current.paused
        ? await audited(db, auditActorOf(ctx), (trx) => setSchedulePaused(trx, current.name, false, nextTick(current)), (r) => (r ? { action: "schedule_resume", resources: { schedule: current.name } } : undefined))
        : current;
      if (!row) throw new ScheduleNotFoundError(req.name);
      return { schedule: scheduleToProto((await findSchedule(db, row.name)) ?? row) };
    },

    async deleteSchedule(req, ctx) {
      const name = validateScheduleName(req.name);
      const deleted = await audited(db, auditActorOf(ctx), (trx) => deleteSchedule(trx, name), (gone) => (gone ? { action: "schedule_delete", resources: { schedule: name } } : undefined));
      if (!deleted) throw new ScheduleNotFoundError(name);
      return {};
    },

    async triggerSchedule(req, ctx) {
      const schedule = await existing(req.name);
      const at = clock.now();
      const task = await catalog.withTypes([schedule.type], (types) => tickTask(schedule, types, at));
      const row = await db.transaction().execute(async (trx) => {
        const [inserted] = await insertTasksInTransaction(trx, [{ ...task, runAt: null }]);
        const created = inserted ?? (await findTickTask(trx, schedule.id, at));
        if (created) await recordManualRun(trx, schedule.id, created.id, at);
        if (inserted) await recordAudit(trx, auditActorOf(ctx), [{ action: "schedule_trigger", resources: { schedule: schedule.name, tasks: [inserted.id] } }]);
        return created;
      });
      return { task: row && taskToProto(row) };
    },
  };
}
