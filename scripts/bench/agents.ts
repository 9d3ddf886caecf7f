/**
 * Remote agents against database workers (issue 26), in the same run: no-op drains through 2 agents
 * (`task-cli agent`, over the API) and through the same total slots as 2 `task-cli serve`
 * processes, alternating rounds so a noisy neighbour hurts both alike (best round each); then
 * create → RUNNING idle with the agents running, and with the database workers running.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "@connectrpc/connect";
import { cliNodeFlags } from "../../bin/node-flags.js";
import type { TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { createBulk, drainRate, idleLatency, lastTaskId, untilDrained } from "./ours.js";
import { cliPath, startServeProcess, type BenchProcess } from "./processes.js";
import type { Percentiles } from "./stats.js";

export interface AgentBenchOptions {
  databaseUrl: string;
  /** The API server's address (a server without tokens: its local caller may run agents). */
  serverUrl: string;
  dataDir: string;
  /** Total slots: split over 2 agents, and over 2 serve processes. */
  concurrency: number;
  tasks: number;
  batch: number;
  rounds: number;
  latencySamples: number;
  registered: (pid: number) => Promise<boolean>;
}

export interface AgentBenchFigures {
  tasks: number;
  slotsEach: number;
  /** Median claim → recorded outcome of a no-op, per round: what one slot's turn costs besides claiming. */
  heldMs: { agents: number[]; workers: number[] };
  agentPerSec: number;
  workerPerSec: number;
  ratio: number;
  rounds: { agents: number; workers: number }[];
  agentIdle: Percentiles;
  workerIdle: Percentiles;
  idleP50Ratio: number;
}

let seq = 0;

/** `task-cli agent` with no database in its environment, once it has registered. */
async function startAgentProcess(db: Db, serverUrl: string, slots: number): Promise<BenchProcess> {
  const name = `bench-agent-${process.pid}-${seq++}`;
  const child = spawn(process.execPath, [...cliNodeFlags(), cliPath, "agent", "--server", serverUrl, "--name", name, "-n", String(slots)], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: "error" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const deadline = Date.now() + 60_000;
  while ((await db.pool.query("select 1 from workers where id like $1", [`agent:%:${name}:%`])).rowCount === 0) {
    if (child.exitCode !== null) throw new Error(`agent ${name} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for agent ${name} to register`);
    await sleep(20);
  }
  return {
    child,
    exited,
    peakRssMb: async () => Number.NaN,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs the agent rows; every process it starts is stopped before it returns. */
export async function benchAgents(db: Db, client: Client<typeof TaskService>, o: AgentBenchOptions): Promise<AgentBenchFigures> {
  const slotsEach = Math.max(1, Math.floor(o.concurrency / 2));
  const startAgents = () => Promise.all([0, 1].map(() => startAgentProcess(db, o.serverUrl, slotsEach)));
  const startWorkers = () => Promise.all([0, 1].map((i) => startServeProcess(o.databaseUrl, path.join(o.dataDir, `serve-${i}`), slotsEach, o.registered)));
  const stop = (ps: BenchProcess[]) => Promise.all(ps.map((p) => p.stop()));

  /** Pre-creates the tasks, starts the processes, waits for the drain; tasks per second. */
  const drain = async (start: () => Promise<BenchProcess[]>, prefix: string): Promise<number> => {
    const afterId = await lastTaskId(db);
    await createBulk(client, o.tasks, o.batch, prefix);
    const ps = await start();
    try {
      await untilDrained(db);
      const { rows } = await db.pool.query("select percentile_cont(0.5) within group (order by extract(epoch from finished_at - started_at) * 1000) as ms from tasks where id > $1", [afterId]);
      held[prefix.startsWith("a") ? "agents" : "workers"].push(Number(rows[0].ms));
      return await drainRate(db, afterId);
    } finally {
      await stop(ps);
    }
  };

  /** Per round, the median time from claim (started_at) to recorded outcome (finished_at), ms. */
  const held = { agents: [] as number[], workers: [] as number[] };
  const rounds: { agents: number; workers: number }[] = [];
  for (let r = 0; r < o.rounds; r++) {
    // Alternate which goes first, so neither always gets the quieter moment.
    if (r % 2 === 0) rounds.push({ workers: await drain(startWorkers, `wdrain-${r}`), agents: await drain(startAgents, `adrain-${r}`) });
    else rounds.push({ agents: await drain(startAgents, `adrain-${r}`), workers: await drain(startWorkers, `wdrain-${r}`) });
  }
  const agentPerSec = Math.max(...rounds.map((x) => x.agents));
  const workerPerSec = Math.max(...rounds.map((x) => x.workers));

  const idleWith = async (start: () => Promise<BenchProcess[]>) => {
    const ps = await start();
    try {
      return await idleLatency(db, client, o.latencySamples);
    } finally {
      await stop(ps);
    }
  };
  const workerIdle = await idleWith(startWorkers);
  const agentIdle = await idleWith(startAgents);
  return { tasks: o.tasks, slotsEach, heldMs: held, agentPerSec, workerPerSec, ratio: agentPerSec / workerPerSec, rounds, agentIdle, workerIdle, idleP50Ratio: agentIdle.p50 / workerIdle.p50 };
}
