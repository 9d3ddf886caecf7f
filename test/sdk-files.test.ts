// Files through the plugin SDK against a real server, worker and database: a plugin reads its input as
// a stream (ctx.input) and attaches outputs (ctx.artifact); the client uploads and downloads.
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTaskClient, definePlugin, startWorker, TaskStatus, z, type TaskClient, type Worker } from "../src/sdk/index.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

let api: TestApi;
let client: TaskClient;
let worker: Worker;

/** Sums the second column of its CSV input; fails its first attempt after attaching a file when asked. */
const total = definePlugin({
  name: "csv_total",
  description: "Sums a CSV column",
  parameters: z.object({ failFirst: z.boolean().default(false) }),
  defaults: { maxAttempts: 2, timeoutMs: 10_000 },
  async run(params, ctx) {
    let rows = 0;
    let sum = 0;
    let rest = "";
    for await (const chunk of ctx.input("rows")) {
      const lines = (rest + chunk.toString()).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        rows++;
        sum += Number(line.split(",")[1]);
      }
    }
    if (params.failFirst && ctx.attempt === 1) {
      await ctx.artifact("partial.txt", "from a failed attempt");
      throw new Error("first attempt fails");
    }
    async function* report() {
      yield `rows,${rows}\n`;
      yield `sum,${sum}\n`;
    }
    await ctx.artifact("report.csv", report());
    return { rows };
  },
});

beforeAll(async () => {
  api = await startTestApi();
  client = createTaskClient({ address: api.server.url });
  worker = await startWorker({
    databaseUrl: api.database.url,
    logLevel: "silent",
    env: {},
    spoolDir: path.join(os.tmpdir(), `sdk-files-spool-${api.database.name}`),
    config: { backoffBaseMs: 20, backoffMaxMs: 50, pollIntervalMs: 100, heartbeatIntervalMs: 200, shutdownGraceMs: 500 },
    plugins: [total],
  });
});
afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await rm(path.join(os.tmpdir(), `sdk-files-spool-${api.database.name}`), { recursive: true, force: true });
});

async function text(stream: AsyncIterable<unknown>): Promise<string> {
  let out = "";
  for await (const chunk of stream) out += String(chunk);
  return out;
}

const csv = () => Readable.from((function* () {
  for (let i = 1; i <= 10_000; i++) yield `${i},${i % 10}\n`;
})());

describe("files through the SDK", () => {
  it("a plugin streams its input and attaches an output the client downloads", async () => {
    const up = await client.upload("rows", csv());
    const task = await client.submit(total, {}, { files: { rows: up } });
    const done = await client.waitFor(task.id, { timeoutMs: 30_000 });
    expect(done.status).toBe(TaskStatus.SUCCEEDED);
    expect(done.result).toEqual({ rows: 10_000 });
    expect(await text(await client.download(task.id, "report.csv"))).toBe("rows,10000\nsum,45000\n");
    const { files } = await client.listTaskFiles({ id: task.id });
    expect(files.map((f) => [f.name, f.attempt, Number(f.size)])).toEqual([["rows", 0, up.size], ["report.csv", 1, 21]]);
  });

  it("keeps outputs with the attempt that made them: a failed attempt keeps none, the retry its own", async () => {
    const task = await client.submit(total, { failFirst: true }, { files: { rows: await client.upload("rows", csv()) } });
    const done = await client.waitFor(task.id, { timeoutMs: 30_000 });
    expect(done.status).toBe(TaskStatus.SUCCEEDED);
    expect(done.attempts).toBe(2);
    const { files } = await client.listTaskFiles({ id: task.id, direction: 2 });
    expect(files.map((f) => [f.name, f.attempt])).toEqual([["report.csv", 2]]);
    await expect(client.download(task.id, "partial.txt")).rejects.toThrow(/404 task \d+ has no artifact partial\.txt/);
    await expect(client.download(task.id, "report.csv", 1)).rejects.toThrow(/has no artifact report\.csv from attempt 1/);
  });

  it("a task without the input its plugin reads fails saying which inputs it has", async () => {
    const task = await client.submit(total, {});
    const done = await client.waitFor(task.id, { timeoutMs: 30_000 });
    expect(done.status).toBe(TaskStatus.FAILED);
    expect(done.lastError).toMatch(/has no input rows \(it has no input files\)/);
  });
});
