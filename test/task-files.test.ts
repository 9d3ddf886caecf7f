import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, openSync, closeSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import http2 from "node:http2";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskFileDirection, TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Role } from "../src/gen/task/v1/token_pb.js";
import { downloadArtifact, uploadFile } from "../src/sdk/files.js";
import { RETENTION_CHUNKS_PER_BATCH, sweepFiles } from "../src/store/files.js";
import { deleteExpiredTasks } from "../src/store/retention.js";
import { alive, runningOn, startWorkerProcess } from "./helpers/fault-workers.js";
import { cliPath, type CliProcess } from "./helpers/process.js";
import { processesMatching, uniqueSleep } from "./helpers/processes.js";
import { useServerProcesses, type ServerProcess } from "./helpers/server-process.js";
import { clientsAs, CONFIGURED, TOKENS } from "./helpers/tokens.js";
import { waitFor } from "./helpers/wait.js";

// Files in and out of tasks (issue 29 part 2), end to end: a `task-cli server` process, `task-cli
// serve` worker processes and the CLI as users run it, over real HTTP and a real PostgreSQL.

const processes = useServerProcesses();
let server: ServerProcess;
let dir: string;
const workers: CliProcess[] = [];
const admin = () => clientsAs(server.url, TOKENS.admin);
const conn = () => ({ address: server.url, token: TOKENS.admin });
const pool = () => processes.database.db.pool;

beforeAll(async () => {
  server = await processes.start(["server", "--port", "0"], { TASK_API_TOKENS: CONFIGURED.join(","), TASK_ENABLE_SHELL: "true" });
  dir = await mkdtemp(path.join(os.tmpdir(), "task-files-"));
  await chmod(dir, 0o755);
});
afterAll(async () => {
  for (const w of workers) if (alive(w)) w.child.kill("SIGKILL");
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function worker(env: Record<string, string> = {}): Promise<CliProcess> {
  const w = await startWorkerProcess(pool(), processes.database.url, env, ["-n", "2"]);
  workers.push(w);
  return w;
}

/** Runs task-cli to completion with the server's address and admin token; stdout to `stdoutFile` when given. */
async function cli(args: string[], stdoutFile?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const fd = stdoutFile ? openSync(stdoutFile, "w") : undefined;
  const child = spawn(process.execPath, [cliPath, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: os.tmpdir(), CI: "true", TASK_ADDRESS: server.url, TASK_TOKEN: TOKENS.admin },
    stdio: ["ignore", fd ?? "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  if (fd !== undefined) closeSync(fd);
  return { code, stdout, stderr };
}

/** A CSV of about `bytes` bytes: id,name,amount rows. */
async function writeCsv(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  let written = 0;
  for (let i = 1; written < bytes; ) {
    let chunk = "";
    for (let k = 0; k < 10_000; k++, i++) chunk += `${i},name${i},${i % 1000}\n`;
    written += chunk.length;
    if (!out.write(chunk)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** The import the Done-when test runs: count rows, wait (the pause lands here), transform every row into the export. */
/**
 * The import: counts the rows, reads them all reporting its progress to $TASK_PROGRESS every 20,000
 * rows (the first half of the bar), waits at `sleep <marker>` (the pause point), then exports the
 * transformed rows (the second half).
 */
function importCommand(marker: string): string {
  return [
    `total=$(wc -l < "$TASK_INPUT_DIR/data")`,
    `echo "$total" > "$TASK_OUTPUT_DIR/count.txt"`,
    `awk -v total="$total" 'NR % 20000 == 0 { printf "%.3f imported %d of %d rows\\n", NR / total / 2, NR, total > ENVIRON["TASK_PROGRESS"]; fflush(ENVIRON["TASK_PROGRESS"]) }' "$TASK_INPUT_DIR/data"`,
    `echo "0.5 imported $total rows; exporting" > "$TASK_PROGRESS"`,
    `sleep ${marker}`,
    `awk -F, 'BEGIN { OFS = "," } { print $1, toupper($2), $3 * 2 }' "$TASK_INPUT_DIR/data" > "$TASK_OUTPUT_DIR/result.csv"`,
    `echo "1 exported $total rows" > "$TASK_PROGRESS"`,
  ].join(" && ");
}

async function statusOf(id: bigint) {
  return (await admin().task.getTask({ id })).task!;
}

async function waitForStatus(id: bigint, status: TaskStatus, timeoutMs = 60_000) {
  return waitFor(async () => {
    const task = await statusOf(id);
    return task.status === status && task;
  }, `task ${id} ${TaskStatus[status]}`, timeoutMs);
}

/** The state letter (R, S, T...) of a process, from /proc. */
function processState(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

async function fileRows(taskId: bigint) {
  const { rows } = await pool().query<{ direction: string; attempt: number; name: string; complete: boolean; chunks: string }>(
    "select direction, attempt, name, complete, (select count(*) from task_file_chunks c where c.file_id = f.id) as chunks from task_files f where task_id = $1 order by id",
    [String(taskId)],
  );
  return rows;
}

describe("files in and out", () => {
  it("imports a 50 MB CSV uploaded with the task reporting its progress, pauses and resumes it, and exports a result downloaded byte for byte", async () => {
    await worker();
    const csv = path.join(dir, "rows.csv");
    await writeCsv(csv, 50 * 1024 * 1024);
    const marker = uniqueSleep(3);
    const created = await cli(["-o", "json", "task", "create", "import", "--type", "shell", "-p", `command=${importCommand(marker)}`, "--max-attempts", "1", "--file", `data=@${csv}`]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const id = BigInt((JSON.parse(created.stdout) as { task: { id: string } }).task.id);

    // The input is stored once, whole, under the name the task sees.
    const { files: inputs } = await admin().task.listTaskFiles({ id, direction: TaskFileDirection.INPUT });
    expect(inputs.map((f) => [f.name, Number(f.size), f.sha256])).toEqual([["data", (await stat(csv)).size, sha256(csv)]]);

    // Paused mid-run: its processes stop (SIGSTOP) and stay stopped until resumed.
    const [sleeper] = await waitFor(() => processesMatching(marker).length > 0 && processesMatching(marker), "the import to reach its pause point", 60_000);
    const control = clientsAs(server.url, TOKENS.admin).control;
    await control.pauseTask({ id });
    const paused = await waitForStatus(id, TaskStatus.PAUSED);
    // Its progress through the import, as the worker read it from $TASK_PROGRESS (stored about once a second).
    const midway = await waitFor(async () => {
      const p = (await statusOf(id)).progress;
      return p && p.fraction === 0.5 && p;
    }, "the import's progress to reach the pause point", 10_000);
    expect(midway).toMatchObject({ attempt: 1, message: expect.stringMatching(/^imported \d+ rows; exporting$/) });
    expect(paused.progress === undefined || paused.progress.fraction <= 0.5).toBe(true);
    await waitFor(() => processState(sleeper!) === "T", "the import's processes to stop");
    await new Promise((r) => setTimeout(r, 1_000));
    expect(processState(sleeper!)).toBe("T");
    expect((await admin().task.listTaskFiles({ id, direction: TaskFileDirection.OUTPUT })).files).toEqual([]);
    await control.resumeTask({ id });

    const watched = await cli(["watch", "--id", String(id)]);
    expect(watched.code).toBe(0);
    const task = await statusOf(id);
    expect(task.status).toBe(TaskStatus.SUCCEEDED);
    // The last report lands with the outcome.
    expect(task.progress).toMatchObject({ attempt: 1, fraction: 1, message: expect.stringMatching(/^exported \d+ rows$/) });

    // What the same awk makes of the same rows, here: the export must be exactly that.
    const expected = path.join(dir, "expected.csv");
    const awk = spawnSync("sh", ["-c", `awk -F, 'BEGIN { OFS = "," } { print $1, toupper($2), $3 * 2 }' "${csv}" > "${expected}"`]);
    expect(awk.status).toBe(0);

    const listed = await cli(["artifacts", "--id", String(id)]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`input\\s+-\\s+data\\s+50\\.\\d MiB\\s+${(await stat(csv)).size}`));
    expect(listed.stdout).toMatch(new RegExp(`output\\s+1\\s+result\\.csv\\s+\\S+ MiB\\s+${(await stat(expected)).size}`));
    expect(listed.stdout).toMatch(/output\s+1\s+count\.txt/);

    const downloaded = path.join(dir, "result.csv");
    const got = await cli(["artifacts", "get", "--id", String(id), "result.csv"], downloaded);
    expect(got.stderr).toBe("");
    expect(got.code).toBe(0);
    expect((await stat(downloaded)).size).toBe((await stat(expected)).size);
    expect(readFileSync(downloaded).equals(readFileSync(expected))).toBe(true);

    // The same bytes over plain HTTP, with the hash as the ETag; the row count as the command wrote it.
    const res = await fetch(`${server.url}/tasks/${id}/artifacts/result.csv`, { headers: { authorization: `Bearer ${TOKENS.admin}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).toBe(`"${sha256(expected)}"`);
    expect(createHash("sha256").update(Buffer.from(await res.arrayBuffer())).digest("hex")).toBe(sha256(expected));
    const count = await downloadArtifact(conn(), id, "count.txt");
    let text = "";
    for await (const chunk of count) text += String(chunk);
    expect(Number(text.trim())).toBe(readFileSync(csv, "latin1").split("\n").length - 1);
    await rm(csv);
    await rm(expected);
    await rm(downloaded);
  }, 240_000);

  it("kill -9 of the worker during the export: no partial file is visible, and the retry exports it whole", async () => {
    if (!workers.some(alive)) await worker();
    // 150 MiB of output: enough chunks that the export is caught half-way.
    const mib = 150;
    const { task } = await admin().task.createTask({
      name: "export",
      type: "shell",
      parameters: { command: `head -c ${mib * 1024 * 1024} /dev/zero | tr '\\0' 'x' > "$TASK_OUTPUT_DIR/big.bin"` } as never,
      maxAttempts: 3,
    });
    const id = task!.id;
    const exporting = await waitFor(async () => {
      const rows = await fileRows(id);
      return rows.some((r) => r.direction === "out" && !r.complete && Number(r.chunks) > 0) && rows;
    }, "the export to have begun", 120_000);
    expect(exporting.every((r) => !r.complete)).toBe(true);
    const pid = await runningOn(pool(), id);
    const victim = workers.find((w) => w.child.pid === pid);
    expect(victim).toBeDefined();
    victim!.child.kill("SIGKILL");
    await victim!.exited;

    // What it had stored is there, but nothing lists or serves it.
    const left = await fileRows(id);
    expect(left.length).toBeGreaterThan(0);
    expect(left.every((r) => !r.complete)).toBe(true);
    expect((await admin().task.listTaskFiles({ id })).files).toEqual([]);
    const partial = await fetch(`${server.url}/tasks/${id}/artifacts/big.bin`, { headers: { authorization: `Bearer ${TOKENS.admin}` } });
    expect(partial.status).toBe(404);
    expect(await partial.text()).toMatch(/has no artifact big\.bin/);

    // A new worker rescues the task (its lease ran out) and the retry exports the file whole.
    await worker();
    const done = await waitForStatus(id, TaskStatus.SUCCEEDED, 120_000);
    expect(done.attempts).toBe(2);
    const { files } = await admin().task.listTaskFiles({ id });
    expect(files.map((f) => [f.name, f.attempt, Number(f.size)])).toEqual([["big.bin", 2, mib * 1024 * 1024]]);
    const body = await downloadArtifact(conn(), id, "big.bin");
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of body) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    expect(size).toBe(mib * 1024 * 1024);
    expect(hash.digest("hex")).toBe(createHash("sha256").update(Buffer.alloc(mib * 1024 * 1024, "x")).digest("hex"));

    // The sweep deletes the killed attempt's rows and chunks, and nothing visible.
    expect(await sweepFiles(processes.database.db.kysely, 0, 100)).toBeGreaterThan(0);
    expect((await fileRows(id)).map((r) => [r.attempt, r.complete])).toEqual([[2, true]]);
    const { rows } = await pool().query("select count(*)::int as n from task_file_chunks c where not exists (select 1 from task_files f where f.id = c.file_id)");
    expect(rows[0].n).toBe(0);
  }, 300_000);

  it("refuses files beyond the caps with a message naming the cap, and keeps nothing", async () => {
    const before = await pool().query("select (select count(*) from task_files)::int as files, (select count(*) from tasks)::int as tasks");
    const small = await processes.start(["server", "--port", "0"], {
      TASK_API_TOKENS: CONFIGURED.join(","), TASK_ENABLE_SHELL: "true",
      TASK_FILES_MAX_TASK_BYTES: "1000",
    });
    const file = path.join(dir, "big.csv");
    await writeCsv(file, 4 * 1024 * 1024);
    // The CLI sends the size first: refused before the body is read.
    const refused = await cli(["--address", small.url, "task", "create", "x", "--type", "shell", "-p", "command=true", "--file", `data=@${file}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/upload of data refused: 413 file data refused: a task's files may hold at most 1000 bytes \(TASK_FILES_MAX_TASK_BYTES\)/);
    // Streamed without a size: refused once the cap is passed (the rest of the 8 MiB is not stored, and the answer still arrives).
    const pieces = () => Readable.from(Array.from({ length: 128 }, () => Buffer.alloc(64 * 1024)));
    await expect(uploadFile({ address: small.url, token: TOKENS.admin }, "data", pieces())).rejects.toThrow(
      /413 file data refused: a task's files may hold at most 1000 bytes/,
    );
    // The total cap: every file stored counts; here the files of the tests before already pass it.
    const full = await processes.start(["server", "--port", "0"], { TASK_API_TOKENS: CONFIGURED.join(","), TASK_ENABLE_SHELL: "true", TASK_FILES_MAX_TOTAL_BYTES: "10000" });
    await expect(uploadFile({ address: full.url, token: TOKENS.admin }, "tiny", pieces())).rejects.toThrow(/413 .*total cap of 10000 bytes \(TASK_FILES_MAX_TOTAL_BYTES\)/);
    // Refused before the body is read (no token): the answer arrives all the same.
    await expect(uploadFile({ address: small.url }, "data", pieces(), 8 * 1024 * 1024)).rejects.toThrow(/upload of data refused: 401/);
    // Outputs: a worker with a small cap fails the attempt, saying why, and keeps none of them.
    await worker({ TASK_QUEUES: "capped", TASK_FILES_MAX_TASK_BYTES: "1000" });
    const { task } = await admin().task.createTask({ name: "too-big", type: "shell", queue: "capped", maxAttempts: 1, parameters: { command: `head -c 5000 /dev/zero > "$TASK_OUTPUT_DIR/out.bin"` } as never });
    const failed = await waitForStatus(task!.id, TaskStatus.FAILED);
    expect(failed.lastError).toMatch(/file out\.bin refused: a task's files may hold at most 1000 bytes \(TASK_FILES_MAX_TASK_BYTES\)/);
    expect(await fileRows(task!.id)).toEqual([]);
    const after = await pool().query("select (select count(*) from task_files)::int as files, (select count(*) from tasks)::int as tasks");
    // Nothing of the refused uploads; one task more (the capped export's) and no file of it.
    expect(after.rows[0]).toEqual({ files: before.rows[0].files, tasks: before.rows[0].tasks + 1 });
    await rm(file);
  }, 180_000);

  it("takes each upload once, and a CreateTask naming an unknown upload creates nothing", async () => {
    const up = await uploadFile(conn(), "data", Readable.from([Buffer.from("1,a,2\n")]));
    const make = (name: string) => admin().task.createTask({ name, type: "shell", parameters: { command: "true" } as never, runAt: { seconds: 4_000_000_000n, nanos: 0 }, files: [{ name: "rows", upload: up.upload }] });
    const first = (await make("first")).task!;
    expect((await admin().task.listTaskFiles({ id: first.id })).files.map((f) => [f.name, Number(f.size)])).toEqual([["rows", 6]]);
    await expect(make("second")).rejects.toThrow(/files\[0\]\.upload: no upload up_\S+ is waiting \(unknown, expired, or already given to a task\)/);
    const { rows } = await pool().query("select count(*)::int as n from tasks where name = 'second'");
    expect(rows[0].n).toBe(0);
    // A batch is all or nothing: the second task names a taken upload, so the first keeps no task and its upload stays free.
    const free = await uploadFile(conn(), "data", Readable.from([Buffer.from("2,b,3\n")]));
    const batch = (second: string) =>
      admin().task.createTasks({
        tasks: [
          { name: "batch-a", type: "shell", parameters: { command: "true" } as never, runAt: { seconds: 4_000_000_000n, nanos: 0 }, files: [{ name: "rows", upload: free.upload }] },
          { name: "batch-b", type: "shell", parameters: { command: "true" } as never, runAt: { seconds: 4_000_000_000n, nanos: 0 }, files: [{ name: "rows", upload: second }] },
        ],
      });
    await expect(batch(up.upload)).rejects.toThrow(/tasks\[1\]\.files\[0\]\.upload: no upload/);
    expect((await pool().query("select count(*)::int as n from tasks where name like 'batch-%'")).rows[0].n).toBe(0);
    const other = await uploadFile(conn(), "data", Readable.from([Buffer.from("4,c,5\n")]));
    const { tasks } = await batch(other.upload);
    expect(await Promise.all(tasks.map(async (t) => (await admin().task.listTaskFiles({ id: t.id })).files.map((f) => Number(f.size))))).toEqual([[6], [6]]);
    // An upload no task takes is swept (after TASK_UPLOAD_TTL_MS; here at once); the task's stays.
    const untaken = await uploadFile(conn(), "data", Readable.from([Buffer.from("never used\n")]));
    expect(await sweepFiles(processes.database.db.kysely, 0, 100)).toBe(1);
    await expect(admin().task.createTask({ name: "late", type: "shell", parameters: { command: "true" } as never, files: [{ name: "rows", upload: untaken.upload }] })).rejects.toThrow(/no upload up_\S+ is waiting/);
    expect((await admin().task.listTaskFiles({ id: first.id })).files).toHaveLength(1);
    // A --file without @ is a usage error, before anything is uploaded.
    const usage = await cli(["task", "create", "x", "--type", "noop", "--file", "data"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--file data: expected name=@path, e\.g\. --file data=@rows\.csv/);
  });

  it("takes uploads over HTTP/2 (h2c) as over HTTP/1.1", async () => {
    const session = http2.connect(server.url);
    try {
      const stream = session.request({ ":method": "POST", ":path": "/uploads?name=h2", authorization: `Bearer ${TOKENS.admin}` });
      stream.end(Buffer.alloc(3 * 1024 * 1024, "y"));
      const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
      let body = "";
      for await (const chunk of stream) body += String(chunk);
      expect(headers[":status"]).toBe(201);
      expect(JSON.parse(body)).toMatchObject({ name: "h2", size: 3 * 1024 * 1024, sha256: createHash("sha256").update(Buffer.alloc(3 * 1024 * 1024, "y")).digest("hex") });
    } finally {
      session.close();
    }
  });

  it("serves an artifact to the tokens that may read its task, and 404 to one restricted to another queue", async () => {
    await worker({ TASK_QUEUES: "reports" });
    const { task } = await admin().task.createTask({ name: "report", type: "shell", queue: "reports", parameters: { command: `echo total > "$TASK_OUTPUT_DIR/report.csv"` } as never });
    await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    const { secret: elsewhere } = await admin().token.createToken({ name: "default-reader", role: Role.READER, queues: ["default"] });
    const { secret: mine } = await admin().token.createToken({ name: "reports-reader", role: Role.READER, queues: ["reports"] });
    const get = (token: string) => fetch(`${server.url}/tasks/${task!.id}/artifacts/report.csv`, { headers: { authorization: `Bearer ${token}` } });
    const refused = await get(elsewhere);
    expect(refused.status).toBe(404);
    expect(await refused.text()).not.toContain("total");
    await expect(clientsAs(server.url, elsewhere).task.listTaskFiles({ id: task!.id })).rejects.toThrow(/not found/);
    const allowed = await get(mine);
    expect(allowed.status).toBe(200);
    expect(await allowed.text()).toBe("total\n");
    expect((await get(TOKENS.reader)).status).toBe(200);
    // Uploading is creating: a reader may not.
    await expect(uploadFile({ address: server.url, token: TOKENS.reader }, "x", Readable.from([Buffer.from("x")]))).rejects.toThrow(/403 permission denied: an upload requires role operator/);
  }, 120_000);

  it("retention deletes finished tasks with their files, the chunks a few MiB a statement", async () => {
    const { rows: before } = await pool().query<{ chunks: number }>(
      "select count(*)::int as chunks from task_file_chunks c join task_files f on f.id = c.file_id join tasks t on t.id = f.task_id where t.finished_at is not null",
    );
    // The 50 MB import and the 150 MiB export are among them: several statements' worth.
    expect(before[0]!.chunks).toBeGreaterThan(2 * RETENTION_CHUNKS_PER_BATCH);
    await new Promise((r) => setTimeout(r, 10));
    const result = await deleteExpiredTasks(processes.database.db.kysely, { succeededMs: 1, failedMs: 1, cancelledMs: 1 }, 1000);
    expect(result.fileChunks).toBe(before[0]!.chunks);
    expect(result.succeeded).toBeGreaterThan(0);
    const { rows } = await pool().query(
      "select (select count(*) from task_files f where f.task_id is not null and not exists (select 1 from tasks t where t.id = f.task_id))::int as orphans, (select count(*) from task_file_chunks c join task_files f on f.id = c.file_id join tasks t on t.id = f.task_id where t.finished_at is not null)::int as chunks",
    );
    expect(rows[0]).toEqual({ orphans: 0, chunks: 0 });
  });
});
