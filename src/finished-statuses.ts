import { TaskStatus } from "./gen/task/v1/task_pb.js";

/**
 * The API's finished statuses, which a task never leaves on its own (it may be retried or deleted):
 * the clients' copy (SDK, CLI, dashboard) of FINISHED_STATUSES in src/store/lifecycle/states.ts,
 * which test/lifecycle-writers.test.ts keeps equal. No Node imports: the dashboard imports it too.
 */
export const FINISHED_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set([TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED]);
