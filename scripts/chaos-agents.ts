/**
 * Agent chaos run (issue 26): two control-plane replicas on one embedded PostgreSQL, agents that
 * reach both through TCP proxies this script owns (`--server proxyA,proxyB`), thousands of shell
 * tasks that write marker files, and under load: kill -9 of busy agents (each restarted), kill -9
 * and restart of one replica, and a network cut of one agent (its proxies stop forwarding for
 * longer than the lease, then resume). Then it checks: no task lost (every task terminal, each with
 * a legal history), none recorded twice (one outcome per attempt, SUCCEEDED at most once), and no
 * two copies of a task overlapping in time (the markers). Exits non-zero on any violation.
 * Usage: npm run chaos:agents -- --tasks 2000 --agents 3 --kills 3
 */
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Command } from "commander";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { TaskService, TaskStatus, type CreateTaskRequest, type CreateTaskRequestSchema } from "../src/gen/task/v1/task_pb.js";
import { Role, TokenService } from "../src/gen/task/v1/token_pb.js";
import { createLogger } from "../src/logger.js";
import { bearerToken } from "../src/sdk/client.js";
import { openDb } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { AgentChaosProcesses, type ChaosAgent } from "./chaos/agent-processes.js";
import { loadTasksWithHistory } from "./chaos/audit.js";
import { checkTaskHistory } from "./chaos/check-history.js";
import { overlaps, readMarkers } from "./chaos/markers.js";
import { checkJobsLeft, exitWith, verdictLines } from "./chaos/verdict.js";

const options = new Command("chaos-agents")
  .option("--tasks <n>", "tasks to create", "2000")
  .option("--agents <n>", "agent processes", "3")
  .option("--slots <n>", "slots per agent", "10")
  .option("--kills <n>", "kill -9 this many busy agents (each restarted)", "3")
  .option("--cut-ms <ms>", "how long one agent's network is cut (longer than the 4 s lease)", "7000")
  .option("--rescuer", "also start a database worker (serve) of a queue no task uses; by default only the API replicas rescue lost attempts (src/api/upkeep.ts)")
  .option("--seed <n>", "random seed (default: time)")
  .option("--timeout <s>", "give up waiting after this many seconds", "600")
  .parse()
  .opts<{ tasks: string; agents: string; slots: string; kills: string; cutMs: string; rescuer?: boolean; seed?: string; timeout: string }>();

const total = Number(options.tasks);
const agentCount = Number(options.agents);
const kills = Number(options.kills);
const cutMs = Number(options.cutMs);
const seed = Number(options.seed ?? Date.now() % 1_000_000);
const deadline = Date.now() + Number(options.timeout) * 1000;
const ADMIN = "chaos-admin-secret-0123456789";

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with --seed. */
function prng(s: number): () => number {
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(seed);
const between = (lo: number, hi: number) => Math.floor(lo + random() * (hi - lo));

/**
 * Every run appends the time ($EPOCHREALTIME) to a file of its own every 100 ms, from its first
 * moment to its last: a copy's interval is [first line, last line], and a copy that outlived its
 * lease would write inside the next copy's interval. A flaky run fails its first attempt; a doomed
 * one fails every attempt.
 */
const MARK_SH = `#!/bin/bash
f="$1/$TASK_ID.$TASK_ATTEMPT.$$"
for ((i = 0; i <= $2; i++)); do
  echo "$EPOCHREALTIME" >> "$f"
  if [ "$i" -lt "$2" ]; then sleep 0.1; fi
done
case "$3" in
  flaky) [ "$TASK_ATTEMPT" -ge 2 ] || exit 7 ;;
  doomed) exit 3 ;;
esac
`;

type Kind = "quick" | "slow" | "flaky" | "doomed";
type TaskInit = MessageInitShape<typeof CreateTaskRequestSchema>;

function makeTask(run: string, i: number, markDir: string, script: string): TaskInit {
  const r = random();
  const kind: Kind = r < 0.7 ? "quick" : r < 0.85 ? "slow" : r < 0.95 ? "flaky" : "doomed";
  const ticks = kind === "slow" ? between(15, 40) : between(0, 3);
  return {
    name: `achaos-${run}-${kind}-${i}`,
    idempotencyKey: `achaos-${run}-${i}`,
    type: "shell",
    maxAttempts: kind === "doomed" ? 2 : 6,
    parameters: { command: `bash ${script} ${markDir} ${ticks} ${kind}` },
  };
}

const kindOf = (name: string) => name.split("-")[2] as Kind;
const started = Date.now();
const log = (msg: string) => process.stdout.write(`[chaos:agents ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);

async function main(): Promise<number> {
  const run = seed.toString(36);
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-chaos-agents-"));
  const markDir = path.join(dir, "markers");
  // The shell plugin may run commands as another user (TASK_SHELL_USER, or nobody under root).
  await chmod(dir, 0o755);
  await mkdir(markDir, { mode: 0o777 });
  await chmod(markDir, 0o777);
  const script = path.join(dir, "mark.sh");
  await writeFile(script, MARK_SH, { mode: 0o755 });
  const logger = createLogger("silent");
  const pgDir = await mkdtemp(path.join(os.tmpdir(), "task-chaos-agents-pg-"));
  const cluster = await startEmbeddedPostgres(pgDir, logger);
  const setupDb = openDb({ connectionString: cluster.url }, logger);
  await migrate(setupDb, logger);
  await setupDb.close();

  const procs = new AgentChaosProcesses(cluster.url, `chaos:admin:${ADMIN}`, Number(options.slots));
  let exitCode = 1;
  try {
    await procs.startReplicas(2);
    // The API replicas rescue a dead agent's attempts themselves (src/api/upkeep.ts); --rescuer adds
    // a database worker's reconciler beside them.
    if (options.rescuer) procs.startRescuer();
    const transport = (i: number) => createConnectTransport({ baseUrl: procs.replicas[i]!.url, httpVersion: "1.1", interceptors: [bearerToken(ADMIN)] });
    const { secret } = await createClient(TokenService, transport(0)).createToken({ name: "chaos-agents", role: Role.AGENT });
    await procs.startAgents(agentCount, secret);
    // The chaos starts once every agent has registered, so it hits agents at work.
    for (const until = Date.now() + 120_000; (await registeredAgents(cluster.url)) < agentCount; await sleep(250)) {
      if (procs.died) throw new Error(procs.died);
      if (Date.now() > until) throw new Error("the agents did not register within 2 minutes");
    }
    log(`seed ${seed}; 2 replicas (ports ${procs.replicas.map((r) => r.port).join(", ")}), ${agentCount} agents x ${options.slots} slots behind proxies, ${total} tasks, ${kills} agent kills, a ${cutMs} ms cut`);
    // Tasks are created and watched through the replica that is not restarted.
    const clients = [0, 1].map((i) => createClient(TaskService, transport(i)));
    let active = 1;

    const batches: TaskInit[][] = [];
    for (let i = 0; i < total; i += 250) batches.push(Array.from({ length: Math.min(250, total - i) }, (_, j) => makeTask(run, i + j, markDir, script)));
    const creating = (async () => {
      for (const batch of batches) {
        for (let wait = 200; ; wait = Math.min(wait * 2, 3_000)) {
          try {
            await clients[active]!.createTasks({ tasks: batch as CreateTaskRequest[] });
            break;
          } catch (err) {
            // The replica restart cuts calls in flight (Unavailable, Aborted: socket hang up); the
            // idempotency keys make a retry (on the other replica, once `active` moved) safe.
            if (!(err instanceof ConnectError) || ![Code.Unavailable, Code.Internal, Code.Aborted, Code.Unknown].includes(err.code)) throw err;
            await sleep(wait);
          }
        }
        await sleep(between(200, 600));
      }
      log(`all ${total} tasks created`);
    })();
    // A creation that fails for good ends the run (in the loops below), with every process stopped.
    let createFailed: unknown;
    creating.catch((err: unknown) => (createFailed = err));
    const checkAlive = () => {
      if (createFailed) throw createFailed;
      if (procs.died) throw new Error(procs.died);
    };

    // The chaos, in turns under load: agent kills, the replica restart after the first, the cut after the second.
    const busyAgent = async (): Promise<ChaosAgent> => {
      for (const until = Date.now() + 10_000; Date.now() < until; await sleep(200)) {
        const names = await busyAgentNames(cluster.url).catch(() => new Set<string>());
        const busy = procs.agents.filter((a) => names.has(a.name) && a.proc?.exitCode === null);
        if (busy.length > 0) return busy[Math.floor(random() * busy.length)]!;
      }
      return procs.agents[Math.floor(random() * procs.agents.length)]!;
    };
    let killed = 0;
    let restarted = false;
    let cut = false;
    while (killed < kills || !restarted || !cut) {
      await sleep(between(1_500, 3_000));
      checkAlive();
      if (killed < kills) {
        const agent = await busyAgent();
        const pid = await procs.killAgent(agent);
        killed++;
        log(`kill -9 agent ${agent.name} (pid ${pid}) (${killed}/${kills})`);
        await sleep(between(200, 1_000));
        procs.startAgent(agent, secret);
      }
      if (!restarted && killed >= Math.min(1, kills)) {
        // The replica more agents are connected to (through their proxies), so the restart moves agents.
        const load = procs.replicas.map((_, i) => procs.agents.reduce((n, a) => n + a.proxies[i]!.connections, 0));
        for (const until = Date.now() + 20_000; load[0]! + load[1]! === 0 && Date.now() < until; await sleep(200)) {
          procs.replicas.forEach((_, i) => (load[i] = procs.agents.reduce((n, a) => n + a.proxies[i]!.connections, 0)));
        }
        const victim = load[0]! >= load[1]! ? 0 : 1;
        active = 1 - victim;
        log(`kill -9 replica ${victim} (port ${procs.replicas[victim]!.port}, ${load[victim]} agent connections; the other has ${load[active]}); back in 1.5 s`);
        await procs.replicas[victim]!.restart(1_500);
        restarted = true;
        log(`replica ${victim} is back`);
      } else if (!cut && killed >= Math.min(2, kills)) {
        const agent = await busyAgent();
        log(`cutting ${agent.name}'s network for ${cutMs} ms`);
        agent.proxies.forEach((p) => p.hold());
        await sleep(cutMs);
        // Forwarding again, the connections held through the cut closed (as TCP would after it).
        agent.proxies.forEach((p) => (p.drop(), p.restore()));
        cut = true;
        log(`${agent.name}'s network is back`);
      }
    }
    await creating;

    for (let lastReport = 0; ; await sleep(500)) {
      checkAlive();
      const counts = await clients[active]!.getTaskStatusCounts({}).catch(() => undefined);
      if (counts) {
        const done = counts.counts.filter((c) => [TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED].includes(c.status)).reduce((n, c) => n + Number(c.count), 0);
        if (Date.now() - lastReport > 5_000) {
          log(`${done}/${total} terminal`);
          lastReport = Date.now();
        }
        if (done >= total) break;
      }
      if (Date.now() > deadline) {
        log("timed out waiting for tasks to finish");
        break;
      }
    }
    const reconnects = procs.agents.reduce((n, a) => n + a.reconnects, 0);
    await procs.stopAll();
    exitCode = await audit(cluster.url, run, markDir, { killed, restarted, cut, reconnects });
  } finally {
    procs.killAll();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(pgDir, { recursive: true, force: true });
  }
  return exitCode;
}

/** Live agent registrations (the `workers` rows of this run's agent token). */
async function registeredAgents(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>("select count(*)::int as n from workers where id like 'agent:chaos-agents:%'");
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

/** The names of agents with RUNNING attempts (agent worker ids are `agent:TOKEN:NAME:RANDOM`). */
async function busyAgentNames(url: string): Promise<Set<string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ worker_id: string }>("select distinct worker_id from tasks where status = 'running' and worker_id like 'agent:%'");
    return new Set(rows.map((r) => r.worker_id.split(":")[2]!));
  } finally {
    await client.end();
  }
}

/** Checks and prints the outcome; returns the exit code. */
async function audit(url: string, run: string, markDir: string, chaos: { killed: number; restarted: boolean; cut: boolean; reconnects: number }): Promise<number> {
  const logger = createLogger("silent");
  const db = openDb({ connectionString: url }, logger);
  try {
    const tasks = await loadTasksWithHistory(db.kysely, `achaos-${run}-`);
    const violations: string[] = [];
    if (tasks.length !== total) violations.push(`expected ${total} tasks, found ${tasks.length}`);
    const byStatus = new Map<string, number>();
    let lost = 0;
    let twice = 0;
    let lostAttempts = 0;
    for (const task of tasks) {
      const problems = checkTaskHistory(task);
      violations.push(...problems);
      if (problems.some((p) => /not terminal/.test(p))) lost++;
      if (problems.some((p) => /more than once|recorded for attempt|illegal step/.test(p))) twice++;
      byStatus.set(task.status, (byStatus.get(task.status) ?? 0) + 1);
      lostAttempts += task.history.filter((h) => / lost: /.test(h.details)).length;
      const kind = kindOf(task.name);
      if (kind === "doomed" && task.status !== "failed") violations.push(`task ${task.id} (doomed) ended ${task.status}`);
      // Anything else may only fail by losing every attempt.
      if (kind !== "doomed" && task.status !== "succeeded" && !/lost/.test(task.last_error ?? "")) violations.push(`task ${task.id} (${kind}) ended ${task.status}: ${task.last_error}`);
    }
    if (tasks.length < total) lost += total - tasks.length;
    if (chaos.killed > 0 && lostAttempts === 0) violations.push(`${chaos.killed} kill -9 of agents rescued no attempt: the kills missed the work`);

    const markers = await readMarkers(markDir);
    const overlapping = overlaps(markers);
    for (const o of overlapping.slice(0, 10)) violations.push(`task ${o.taskId}: copies ${o.first} and ${o.second} overlap by ${o.overlapMs.toFixed(0)} ms`);
    const runsByTask = new Map<string, number>();
    for (const m of markers) runsByTask.set(m.taskId, (runsByTask.get(m.taskId) ?? 0) + 1);
    const attemptsRun = tasks.reduce((n, t) => n + t.attempts, 0);

    const { after: jobs } = await checkJobsLeft(db.kysely, logger, violations);
    const lines = [
      "",
      `agent chaos report (seed ${seed}): ${tasks.length} tasks, 2 replicas, ${agentCount} agents x ${options.slots}, ${chaos.killed} agent kill -9, ${chaos.restarted ? 1 : 0} replica restart, ${chaos.cut ? 1 : 0} network cut of ${cutMs} ms, ${((Date.now() - started) / 1000).toFixed(1)}s`,
      `  by status: ${[...byStatus].map(([s, n]) => `${s} ${n}`).join(", ")}`,
      `  attempts: ${attemptsRun} recorded, ${markers.length} runs left markers (${runsByTask.size} tasks); ${lostAttempts} attempts rescued from killed or cut agents; agents reconnected ${chaos.reconnects} times`,
      `  lost: ${lost}, recorded twice: ${twice}, overlapping copies: ${overlapping.length}`,
      `  task jobs left after the reconciler's full pass: ${jobs.jobs}`,
      ...verdictLines(violations),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    return violations.length === 0 ? 0 : 1;
  } finally {
    await db.close();
  }
}

exitWith("chaos:agents", main);
