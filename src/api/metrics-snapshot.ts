import type { Kysely } from "kysely";
import type { DatabaseSnapshot } from "../metrics.js";
import { behindLockTimeout, oldestWaitingAges, waitsByReason } from "../store/queues.js";
import { listRateLimits } from "../store/rate-limits.js";
import type { Database } from "../store/schema.js";
import { countTaskGroups } from "../store/task-counts.js";
import { workerCapacity } from "../store/workers.js";

/**
 * What the API process's database gauges show (Metrics.addDatabaseGauges), in five reads: the
 * maintained task counts (tasks by status, queue depth), one bounded index probe per queue with
 * waiting tasks (oldest waiting age), the workers table, the waits held by a limit or a pause
 * (waitsByReason: only queues with such settings), and the rate limits' use (no task row read:
 * the maintained counts and the buckets; none when there is no limit). Each read that may wait
 * for a lock gives up after 200 ms and leaves its gauges out of that scrape. The caller caches it.
 */
export async function readDatabaseSnapshot(db: Kysely<Database>, leaseMs: number): Promise<DatabaseSnapshot> {
  const [groups, workers, waits, rateLimits] = await Promise.all([
    countTaskGroups(db),
    workerCapacity(db, leaseMs),
    waitsByReason(db),
    behindLockTimeout(db, listRateLimits).then((l) => l ?? []),
  ]);
  const tasksByStatus = new Map<string, number>();
  const queues = new Map<string, DatabaseSnapshot["queues"][number]>();
  for (const g of groups) {
    tasksByStatus.set(g.status, (tasksByStatus.get(g.status) ?? 0) + g.count);
    let q = queues.get(g.queue);
    if (!q) queues.set(g.queue, (q = { queue: g.queue, waiting: { queued: 0, retrying: 0 }, oldestWaitingAgeSeconds: 0 }));
    if (g.status === "queued" || g.status === "retrying") q.waiting[g.status] += g.count;
  }
  const withWaiting = [...queues.values()].filter((q) => q.waiting.queued + q.waiting.retrying > 0);
  const ages = await oldestWaitingAges(db, withWaiting.map((q) => q.queue));
  // Unknown while tasks is locked: the gauge leaves those queues out rather than report 0.
  for (const q of withWaiting) q.oldestWaitingAgeSeconds = ages ? (ages.get(q.queue) ?? 0) : undefined;
  return { tasksByStatus, queues: [...queues.values()], workers, waits, rateLimits };
}
