import { createConnectQueryKey } from "@connectrpc/connect-query";
import type { QueryClient } from "@tanstack/react-query";
import { ScheduleService } from "../../../src/gen/task/v1/schedule_pb.js";
import { TaskService } from "../../../src/gen/task/v1/task_pb.js";

/**
 * After a task changes (created, cancelled, retried): the lists and the counts it appears in. Keys
 * without input match every page and filter of that method.
 */
export function invalidateTaskLists(queryClient: QueryClient): Promise<void> {
  return Promise.all([
    queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: TaskService.method.listTasks, cardinality: "finite" }) }),
    queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: TaskService.method.getTaskStatusCounts, cardinality: "finite" }) }),
  ]).then(() => undefined);
}

/** After a schedule changes (paused, resumed, triggered): the schedules list. */
export function invalidateSchedules(queryClient: QueryClient): Promise<void> {
  return queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: ScheduleService.method.listSchedules, cardinality: "finite" }) });
}
