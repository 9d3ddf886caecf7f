import { useEffect } from "react";
import { keepPreviousData, useQueryClient } from "@tanstack/react-query";
import { createConnectQueryKey, useQuery } from "@connectrpc/connect-query";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ScheduleService } from "../../../src/gen/task/v1/schedule_pb.js";
import { TaskChange_Kind, TaskService, type ListTasksRequestSchema } from "../../../src/gen/task/v1/task_pb.js";
import { subscribeTaskChanges, useTaskStreamState } from "../services/task-stream";

/**
 * How often lists are re-read while the WatchTasks stream is NOT live (connecting or
 * reconnecting), and how often schedules are re-read (their next and last runs move on their own;
 * WatchTasks reports tasks, not schedules).
 */
export const LIVE_REFRESH_MS = 2_000;
/** Changes arriving within this window cause one re-read, not one each. */
const CHANGE_DEBOUNCE_MS = 250;

const polling = {
  refetchInterval: LIVE_REFRESH_MS,
  // A hidden tab does not poll; it refetches when it is shown again.
  refetchIntervalInBackground: false,
  refetchOnWindowFocus: true,
} as const;

/**
 * Re-reads the task lists and counts on the page when WatchTasks reports a change: one shared
 * stream per view (services/task-stream.ts), no polling while it is live.
 */
function useTaskChanges(): { refetchInterval: number | false } {
  const queryClient = useQueryClient();
  const state = useTaskStreamState();
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let counts = false;
    const refresh = () => {
      timer = undefined;
      void queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: TaskService.method.listTasks, cardinality: undefined }) });
      if (counts) void queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: TaskService.method.getTaskStatusCounts, cardinality: undefined }) });
      counts = false;
    };
    return subscribeTaskChanges((change) => {
      // Progress moves the list's bars but no count.
      if (change === "resync" || change.kind !== TaskChange_Kind.PROGRESS) counts = true;
      timer ??= setTimeout(refresh, CHANGE_DEBOUNCE_MS);
    });
  }, [queryClient]);
  // Until the stream is live (and while it reconnects) the lists fall back to polling.
  return { refetchInterval: state === "live" ? false : LIVE_REFRESH_MS };
}

/** One page of tasks, kept current; the previous page stays on screen while the next one loads. */
export function useLiveTaskList(input: MessageInitShape<typeof ListTasksRequestSchema>) {
  const { refetchInterval } = useTaskChanges();
  return useQuery(TaskService.method.listTasks, input, { ...polling, refetchInterval, placeholderData: keepPreviousData });
}

/** Tasks per status, kept current. */
export function useLiveStatusCounts() {
  const { refetchInterval } = useTaskChanges();
  return useQuery(TaskService.method.getTaskStatusCounts, {}, { ...polling, refetchInterval });
}

/** The schedules (one page of up to 1000, by name), kept current: next and last runs move on their own. */
export function useLiveSchedules() {
  return useQuery(ScheduleService.method.listSchedules, { pageSize: 1000 }, polling);
}
