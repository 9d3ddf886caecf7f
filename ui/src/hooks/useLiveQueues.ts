import { createConnectQueryKey, useQuery } from "@connectrpc/connect-query";
import type { QueryClient } from "@tanstack/react-query";
import { RateLimitService } from "../../../src/gen/task/v1/limit_pb.js";
import { QueueService, WorkerService } from "../../../src/gen/task/v1/queue_pb.js";

export { QueueService, RateLimitService };

/**
 * How often queues and workers are re-read while the page is visible. Their figures (running,
 * waiting, oldest age, heartbeats) move with time and with every worker's claims, which WatchTasks
 * does not describe per queue; a read is one small grouped query.
 */
export const QUEUES_REFRESH_MS = 2_000;

const live = { refetchInterval: QUEUES_REFRESH_MS, refetchIntervalInBackground: false, refetchOnWindowFocus: true } as const;

/** Every queue with its settings and what waits and runs in it, kept current. */
export function useLiveQueues() {
  return useQuery(QueueService.method.listQueues, {}, live);
}

/** The live worker processes, kept current. */
export function useLiveWorkers() {
  return useQuery(WorkerService.method.listWorkers, {}, live);
}

/** The rate limits with their use (tokens left, tasks waiting), kept current; only when the caller may list them. */
export function useLiveRateLimits(enabled: boolean) {
  return useQuery(RateLimitService.method.listRateLimits, {}, { ...live, enabled });
}

/** One queue with each key's use of its limits (GetQueue's key_use), kept current. */
export function useLiveKeyUse(queue: string) {
  return useQuery(QueueService.method.getQueue, { name: queue }, live);
}

/** After a queue's settings change: the queues list. */
export function invalidateQueues(queryClient: QueryClient): Promise<void> {
  return queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: QueueService.method.listQueues, cardinality: "finite" }) });
}
