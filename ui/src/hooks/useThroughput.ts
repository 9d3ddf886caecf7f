import { useQuery } from "@connectrpc/connect-query";
import { TaskService } from "../../../src/gen/task/v1/task_pb.js";

/**
 * How often the throughput chart is re-read while the page is visible. Its buckets are minutes, so
 * a few reads a minute keep the current bar moving; it is a cheap read (per-minute counts, never
 * the tasks), and a task stream would not make it any fresher than its own granularity.
 */
export const THROUGHPUT_REFRESH_MS = 10_000;

/** Attempts ended per minute over the last hour. */
export function useThroughput() {
  return useQuery(TaskService.method.getTaskThroughput, { minutes: 60 }, { refetchInterval: THROUGHPUT_REFRESH_MS, refetchIntervalInBackground: false });
}
