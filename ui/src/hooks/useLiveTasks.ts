import { keepPreviousData } from "@tanstack/react-query";
import { useQuery } from "@connectrpc/connect-query";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ScheduleService } from "../../../src/gen/task/v1/schedule_pb.js";
import { TaskService, type ListTasksRequestSchema } from "../../../src/gen/task/v1/task_pb.js";

/**
 * How often the task list and the counts are re-read while the page is visible.
 *
 * INTERIM: the API has no WatchTasks stream yet, so "live" lists refetch on an interval. This file
 * is the one place that knows it: when WatchTasks lands, replace the interval with one stream per
 * view that writes into these same query keys (and shows the reconnecting state as useWatchTask
 * does); the views do not change.
 */
export const LIVE_REFRESH_MS = 2_000;

const live = {
  refetchInterval: LIVE_REFRESH_MS,
  // A hidden tab does not poll; it refetches when it is shown again.
  refetchIntervalInBackground: false,
  refetchOnWindowFocus: true,
} as const;

/** One page of tasks, kept current; the previous page stays on screen while the next one loads. */
export function useLiveTaskList(input: MessageInitShape<typeof ListTasksRequestSchema>) {
  return useQuery(TaskService.method.listTasks, input, { ...live, placeholderData: keepPreviousData });
}

/** Tasks per status, kept current. */
export function useLiveStatusCounts() {
  return useQuery(TaskService.method.getTaskStatusCounts, {}, live);
}

/** The schedules (one page of up to 1000, by name), kept current: next and last runs move on their own. */
export function useLiveSchedules() {
  return useQuery(ScheduleService.method.listSchedules, { pageSize: 1000 }, live);
}
