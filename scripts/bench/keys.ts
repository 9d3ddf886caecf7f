/**
 * What keys cost the drain (issue 27: "drain of tasks with a key and no limit hit ≥ 0.8× the
 * drain without keys, in the same bench run"): N pre-created no-ops drained by one fresh serve
 * process, without keys and then with keys (spread over `keys` keys, no limit: each key takes
 * turns), `rounds` times in alternating order so that the machine's load hurts both alike; best round each.
 */
import type { Client } from "@connectrpc/connect";
import type { TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { drainRate, lastTaskId, untilDrained } from "./ours.js";
import { startServeProcess } from "./processes.js";

/** Both drains' best rates (tasks per second) and their ratio. */
export interface KeyedDrain {
  tasks: number;
  keys: number;
  unkeyedPerSec: number;
  keyedPerSec: number;
  rounds: { unkeyed: number; keyed: number }[];
  ratio: number;
}

/** Runs the comparison (see the module comment). */
export async function keyedDrain(
  db: Db,
  client: Client<typeof TaskService>,
  o: { databaseUrl: string; dataDir: string; concurrency: number; tasks: number; batch: number; keys: number; rounds: number; registered: (pid: number) => Promise<boolean> },
): Promise<KeyedDrain> {
  const drain = async (keyed: boolean, round: number): Promise<number> => {
    const after = await lastTaskId(db);
    for (let i = 0; i < o.tasks; i += o.batch) {
      const n = Math.min(o.batch, o.tasks - i);
      await client.createTasks({
        tasks: Array.from({ length: n }, (_, j) => ({ name: `keys-${round}-${i + j}`, type: "noop", queue: "bench-keys", key: keyed ? `tenant-${(i + j) % o.keys}` : "" })),
      });
    }
    const serve = await startServeProcess(o.databaseUrl, `${o.dataDir}-${keyed ? "keyed" : "plain"}-${round}`, o.concurrency, o.registered, { TASK_QUEUES: "bench-keys" });
    try {
      await untilDrained(db);
    } finally {
      await serve.stop();
    }
    return drainRate(db, after);
  };
  const rounds: { unkeyed: number; keyed: number }[] = [];
  // The order alternates: the first drain after a pause tends to run slower (a cold cache, the load of what ran before).
  for (let round = 0; round < o.rounds; round++) {
    if (round % 2 === 0) {
      const unkeyed = await drain(false, round);
      rounds.push({ unkeyed, keyed: await drain(true, round) });
    } else {
      const keyed = await drain(true, round);
      rounds.push({ unkeyed: await drain(false, round), keyed });
    }
  }
  const unkeyedPerSec = Math.max(...rounds.map((r) => r.unkeyed));
  const keyedPerSec = Math.max(...rounds.map((r) => r.keyed));
  return { tasks: o.tasks, keys: o.keys, unkeyedPerSec, keyedPerSec, rounds, ratio: keyedPerSec / unkeyedPerSec };
}
