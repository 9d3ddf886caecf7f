import { readFileSync } from "node:fs";
import http from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskChange_Kind, TaskStatus, type WatchTasksResponse } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { createOwnClusterDatabase } from "./helpers/database.js";
import { startServerProcess } from "./helpers/server-process.js";
import { spawnCli } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
// A cluster of its own: the feed delivers a change once every writing transaction that started
// before it has ended, cluster-wide, so other test files' long transactions would hold it back.
beforeAll(async () => {
  api = await startTestApi({ config: { watchHeartbeatMs: 300 }, database: createOwnClusterDatabase });
}, 120_000);
afterAll(async () => {
  await api?.close();
});

/** Reads a stream into `into` until `until` says stop (then the stream is cancelled). */
async function collect(req: { cursor?: string; types?: string[]; statuses?: TaskStatus[] }, into: WatchTasksResponse[], until: () => boolean): Promise<void> {
  const stop = new AbortController();
  try {
    for await (const res of api.client.watchTasks({ cursor: req.cursor ?? "", filter: { types: req.types ?? [], statuses: req.statuses ?? [] } }, { signal: stop.signal })) {
      into.push(res);
      if (until()) break;
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  } finally {
    stop.abort();
  }
}

function lastCursor(messages: WatchTasksResponse[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const e = messages[i]!.event;
    if (e.case === "change" || e.case === "heartbeat" || e.case === "resync") return e.value.cursor;
  }
  return "";
}

const created = (messages: WatchTasksResponse[], type: string) =>
  messages.flatMap((m) => (m.event.case === "change" && m.event.value.kind === TaskChange_Kind.CREATED && m.event.value.task?.type === type ? [m.event.value.task.id] : []));

describe("WatchTasks", () => {
  it("a reconnect in the middle of 1,000 creations misses none and repeats none", async () => {
    const type = "noop";
    const first: WatchTasksResponse[] = [];
    // Open, wait for the first heartbeat (the stream is live), then create while reading.
    let creating: Promise<unknown> | undefined;
    let ids: bigint[] = [];
    await collect({ types: [type] }, first, () => {
      if (!creating && first.length === 1) {
        expect(first[0]!.event.case).toBe("heartbeat");
        // 20 concurrent batches of 50: commits land out of id order.
        creating = Promise.all(
          Array.from({ length: 20 }, (_, b) =>
            api.client.createTasks({ tasks: Array.from({ length: 50 }, (_, i) => ({ name: `w-${b}-${i}`, type, runAt: { seconds: 4_000_000_000n, nanos: 0 } })) }),
          ),
        ).then((rs) => (ids = rs.flatMap((r) => r.tasks.map((t) => t.id))));
      }
      return created(first, type).length >= 300;
    });
    const cursor = lastCursor(first);
    expect(cursor).toMatch(/^c1\./);
    await creating;
    const second: WatchTasksResponse[] = [];
    const seenBefore = created(first, type).length;
    await collect({ types: [type], cursor }, second, () => seenBefore + created(second, type).length >= 1_000);
    const all = [...created(first, type), ...created(second, type)];
    expect(all).toHaveLength(1_000);
    expect(new Set(all).size).toBe(1_000);
    expect([...all].sort()).toEqual([...ids].sort());
  }, 120_000);

  it("a client that reconnects the moment it closes still gets the changes after its cursor", async () => {
    // The old stream's detach and the new stream's attach overlap: the new one must not be left
    // without the shared reader that the detach stops.
    for (let round = 0; round < 15; round++) {
      const first: WatchTasksResponse[] = [];
      await collect({ types: ["noop"] }, first, () => first.length >= 1);
      const cursor = lastCursor(first);
      const second: WatchTasksResponse[] = [];
      let id: bigint | undefined;
      await collect({ types: ["noop"], cursor }, second, () => {
        if (second.length === 1 && id === undefined) {
          void api.client.createTask({ name: `reconnect-${round}`, type: "noop", runAt: { seconds: 4_000_000_000n, nanos: 0 } }).then((r) => (id = r.task!.id));
        }
        return id !== undefined && created(second, "noop").includes(id);
      });
    }
  }, 60_000);

  it("reports status changes and finishes for the filter, with heartbeats on a quiet stream", async () => {
    const workers = await startTestWorkers(api.database);
    try {
      const messages: WatchTasksResponse[] = [];
      let id: bigint | undefined;
      await collect({ types: ["shell"] }, messages, () => {
        if (id === undefined && messages.length === 1) {
          void api.client.createTask({ name: "watched", type: "shell", parameters: { command: "true" } }).then((r) => (id = r.task!.id));
        }
        const changes = messages.flatMap((m) => (m.event.case === "change" ? [m.event.value] : []));
        const finished = changes.some((c) => c.kind === TaskChange_Kind.FINISHED);
        // Two heartbeats after the finish: the stream stays alive while quiet.
        return finished && messages.slice(messages.findIndex((m) => m.event.case === "change" && m.event.value.kind === TaskChange_Kind.FINISHED)).filter((m) => m.event.case === "heartbeat").length >= 2;
      });
      const changes = messages.flatMap((m) => (m.event.case === "change" ? [m.event.value] : []));
      expect(changes.map((c) => [c.kind, c.status, c.previousStatus])).toEqual([
        [TaskChange_Kind.CREATED, TaskStatus.QUEUED, TaskStatus.UNSPECIFIED],
        [TaskChange_Kind.STATUS_CHANGED, TaskStatus.RUNNING, TaskStatus.QUEUED],
        [TaskChange_Kind.FINISHED, TaskStatus.SUCCEEDED, TaskStatus.RUNNING],
      ]);
      expect(changes.every((c) => c.task?.id === id)).toBe(true);
      // A status filter also sees a task leave it.
      const queuedOnly: WatchTasksResponse[] = [];
      await collect({ statuses: [TaskStatus.QUEUED], types: ["shell"] }, queuedOnly, () => {
        if (queuedOnly.length === 1) void api.client.createTask({ name: "leaves", type: "shell", parameters: { command: "true" } });
        return queuedOnly.some((m) => m.event.case === "change" && m.event.value.status === TaskStatus.RUNNING);
      });
      expect(queuedOnly.flatMap((m) => (m.event.case === "change" ? [m.event.value.status] : []))).toEqual([TaskStatus.QUEUED, TaskStatus.RUNNING]);
    } finally {
      await workers.stop();
    }
  }, 60_000);

  it("refuses a malformed or foreign cursor and paging fields with InvalidArgument", async () => {
    const code = async (req: Parameters<typeof api.client.watchTasks>[0]) => {
      try {
        for await (const _ of api.client.watchTasks(req)) break;
        return "ok";
      } catch (err) {
        return ConnectError.from(err).code;
      }
    };
    expect(await code({ cursor: "nonsense" })).toBe(Code.InvalidArgument);
    expect(await code({ cursor: "c1.12.x" })).toBe(Code.InvalidArgument);
    expect(await code({ cursor: "c1.99999999999999999.1" })).toBe(Code.InvalidArgument);
    expect(await code({ filter: { pageSize: 10 } })).toBe(Code.InvalidArgument);
    expect(await code({ filter: { statuses: [99 as TaskStatus] } })).toBe(Code.InvalidArgument);
    expect(await code({})).toBe("ok");
  });
});

/**
 * A WatchTasks stream over a raw HTTP/1.1 request (Connect protocol, JSON), whose response can be
 * paused: a reader that really stops reading (the generated client buffers whatever arrives).
 */
function rawWatch(baseUrl: string, body: object) {
  const json = Buffer.from(JSON.stringify(body));
  const envelope = Buffer.alloc(5 + json.length);
  envelope.writeUInt32BE(json.length, 1);
  json.copy(envelope, 5);
  const url = new URL("/task.v1.TaskService/WatchTasks", baseUrl);
  let buffered = Buffer.alloc(0);
  const messages: { flags: number; json: Record<string, unknown> }[] = [];
  let response: http.IncomingMessage | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { "content-type": "application/connect+json", "connect-protocol-version": "1" } }, (res) => {
      response = res;
      res.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
          const len = buffered.readUInt32BE(1);
          messages.push({ flags: buffered[0]!, json: JSON.parse(buffered.subarray(5, 5 + len).toString()) });
          buffered = buffered.subarray(5 + len);
        }
      });
      resolve();
    });
    req.on("error", reject);
    req.end(envelope);
  });
  return { ready, messages, pause: () => response!.pause(), resume: () => response!.resume(), close: () => response?.destroy() };
}

describe("WatchTasks with a slow consumer", () => {
  it("does not grow the server's memory: the stream gets a resync instead", async () => {
    const server = await startServerProcess(api.database.url, ["server", "--port", "0"], { TASK_WATCH_MAX_QUEUED: "200", TASK_WATCH_HEARTBEAT_MS: "500" });
    const pid = server.proc.child.pid!;
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
    const watch = rawWatch(server.url, { filter: { types: ["shell"] } });
    try {
      await watch.ready;
      await waitFor(() => watch.messages.length > 0, "the first heartbeat", 10_000);
      expect(watch.messages[0]!.json).toHaveProperty("heartbeat");
      watch.pause();
      const before = rss();
      // 5,000 changes of tasks with 12 KB of parameters each (lists keep up to 16 KiB inline):
      // ~60 MB of messages, several times that as objects, if the server buffered them.
      const blob = "x".repeat(12_000);
      for (let b = 0; b < 50; b++) {
        await api.client.createTasks({ tasks: Array.from({ length: 100 }, (_, i) => ({ name: `slow-${b}-${i}`, type: "shell", parameters: { command: `true ${blob}` }, runAt: { seconds: 4_000_000_000n, nanos: 0 } })) });
      }
      await new Promise((r) => setTimeout(r, 3_000));
      const after = rss();
      console.log(`slow WatchTasks reader: server RSS ${before.toFixed(0)} MB before, ${after.toFixed(0)} MB after 5,000 changes (~60 MB of messages)`);
      // Reading and converting the rows costs some (about 50 MB of heap either way); buffering
      // the messages would add well over 120 MB.
      expect(after - before).toBeLessThan(100);
      const pausedAt = watch.messages.length;
      watch.resume();
      const resync = await waitFor(() => watch.messages.find((m) => "resync" in m.json), "the resync message", 30_000);
      expect(resync.json.resync).toMatchObject({ cursor: expect.stringMatching(/^c1\./), reason: expect.stringMatching(/fell more than 200 changes behind/) });
      const beforeResync = watch.messages.indexOf(resync);
      console.log(`slow WatchTasks reader: ${pausedAt} messages before pausing, ${beforeResync} before the resync (of 5,000 changes)`);
      // What the server queued (200) plus what the sockets held; never the 5,000.
      expect(beforeResync).toBeLessThan(2_000);
    } finally {
      watch.close();
      await server.stop();
    }
  }, 240_000);
});

describe("task-cli task list --watch", () => {
  it("prints changes line by line when stdout is not a terminal", async () => {
    const cli = spawnCli(["--address", api.server.url, "task", "list", "--watch", "--type", "shell"], {});
    try {
      await waitFor(() => cli.output().includes("watching") || cli.output().includes("no tasks") || /ID\s+NAME/.test(cli.output()), "the initial list", 20_000);
      const { task } = await api.client.createTask({ name: "listed-live", type: "shell", parameters: { command: "true" }, runAt: { seconds: 4_000_000_000n, nanos: 0 } });
      await waitFor(() => new RegExp(`created\\s+${task!.id}\\s+listed-live\\s+QUEUED`).test(cli.output()), "the created line", 20_000);
      await api.client.cancelTask({ id: task!.id });
      await waitFor(() => new RegExp(`finished\\s+${task!.id}\\s+listed-live\\s+QUEUED -> CANCELLED`).test(cli.output()), "the finished line", 20_000);
    } finally {
      cli.child.kill("SIGTERM");
      await cli.exited;
    }
  }, 60_000);
});
