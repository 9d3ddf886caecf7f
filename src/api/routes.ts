import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { file_grpc_health_v1_health, Health } from "../gen/grpc/health/v1/health_pb.js";
import { file_task_v1_queue, QueueService, WorkerService } from "../gen/task/v1/queue_pb.js";
import { file_task_v1_control, TaskControlService } from "../gen/task/v1/control_pb.js";
import { file_task_v1_schedule, ScheduleService } from "../gen/task/v1/schedule_pb.js";
import { file_task_v1_task, TaskService } from "../gen/task/v1/task_pb.js";
import { file_task_v1_token, TokenService } from "../gen/task/v1/token_pb.js";
import { AuditService, file_task_v1_audit } from "../gen/task/v1/audit_pb.js";
import { AgentService, file_task_v1_agent } from "../gen/task/v1/agent_pb.js";
import { file_task_v1_limit, RateLimitService } from "../gen/task/v1/limit_pb.js";
import { createRateLimitService } from "./limit-service.js";
import { createAgentService, type AgentServiceDeps } from "./agent-service.js";
import type { Listener } from "../store/listen.js";
import { createAuditService } from "./audit-service.js";
import type { Authenticator } from "./auth.js";
import type { Logger } from "../logger.js";
import { toConnectError } from "./connect-errors.js";
import { answerDecodeErrorsAsInvalidArgument } from "./decode-errors.js";
import { createHealthService, type HealthOptions } from "./health.js";
import { registerReflection } from "./reflection.js";
import { createQueueService, createWorkerService } from "./queue-service.js";
import { createScheduleService } from "./schedule-service.js";
import { createTaskControlService } from "./task-control-service.js";
import { createTokenService } from "./token-service.js";
import { shellCheckerFor } from "./shell-check.js";
import { catalogFor, createTaskService, type TaskServiceDeps } from "./task-service.js";

/** Maps whatever a handler throws to a Connect error, in one place. */
export function errorMappingInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const rpcLogger = logger.child({ rpc: req.method.name });
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw toConnectError(err, rpcLogger);
    }
    if (!res.stream) return res;
    // A server stream fails while it is being read, after next() has returned.
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (err) {
          throw toConnectError(err, rpcLogger);
        }
      })(),
    };
  };
}

/** The API's own services (health and reflection aside); roles.ts has a rule for each of their methods. */
export const API_SERVICES = [TaskService, ScheduleService, QueueService, WorkerService, TaskControlService, TokenService, AuditService, AgentService, RateLimitService] as const;

/** Registers every service on a router. */
export function routes(
  deps: TaskServiceDeps & {
    health: HealthOptions;
    auth: Authenticator;
    listener?: Listener;
    config: AgentServiceDeps["config"];
    agentTiming?: AgentServiceDeps["timing"];
    agentSessions?: AgentServiceDeps["sessions"];
  },
): (router: ConnectRouter) => void {
  // One catalog (and its cache) for every service.
  // And one shell command checker, so creates and schedules share its concurrency cap.
  const withCatalog = { ...deps, catalog: catalogFor(deps), shellChecker: deps.shellChecker ?? shellCheckerFor(deps.config, deps.logger) };
  return (router) => {
    router.service(TaskService, createTaskService(withCatalog));
    router.service(ScheduleService, createScheduleService(withCatalog));
    router.service(QueueService, createQueueService(withCatalog));
    router.service(WorkerService, createWorkerService(withCatalog));
    router.service(TaskControlService, createTaskControlService(withCatalog));
    router.service(TokenService, createTokenService(deps));
    router.service(AuditService, createAuditService(deps));
    router.service(AgentService, createAgentService({ db: deps.db, auth: deps.auth, listener: deps.listener, logger: deps.logger, config: deps.config, timing: deps.agentTiming, sessions: deps.agentSessions }));
    router.service(RateLimitService, createRateLimitService(deps));
    router.service(Health, createHealthService(deps.db.kysely, deps.health));
    registerReflection(
      router,
      [file_task_v1_task, file_task_v1_schedule, file_task_v1_queue, file_task_v1_control, file_task_v1_token, file_task_v1_audit, file_task_v1_agent, file_task_v1_limit, file_grpc_health_v1_health],
      [...API_SERVICES.map((s) => s.typeName), Health.typeName],
    );
    // Last: it wraps the handlers registered above.
    answerDecodeErrorsAsInvalidArgument(router);
  };
}
