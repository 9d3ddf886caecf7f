import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Command, Option } from "commander";
import { ListTaskFilesResponseSchema, TaskFileDirection, type ListTaskFilesResponse } from "../../gen/task/v1/task_pb.js";
import { downloadArtifact, uploadFile, type Upload } from "../../sdk/files.js";
import { taskClient, type ClientOptions } from "../client.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { isoTime, makeTable, printMessage } from "../output.js";
import { parseInteger, parseTaskId } from "../parse.js";
import type { GlobalOptions } from "../program.js";
import { formatBytes } from "../../bytes.js";

/** `--file name=@path`: the name the task sees and the local file to upload. */
export function parseFileFlag(flag: string): { name: string; path: string } {
  const match = /^([^=]+)=@(.+)$/.exec(flag);
  if (!match) throw new UsageError(`--file ${flag}: expected name=@path, e.g. --file data=@rows.csv`);
  return { name: match[1]!, path: match[2]! };
}

/** Uploads each `--file` (streamed from disk), in order; returns CreateTask's `files`. */
export async function uploadFileFlags(options: ClientOptions, flags: string[]): Promise<{ name: string; upload: string }[]> {
  const parsed = flags.map(parseFileFlag);
  const files = [];
  for (const { name, path } of parsed) {
    let size: number;
    try {
      const info = await stat(path);
      if (!info.isFile()) throw new UsageError(`--file ${name}=@${path}: not a regular file`);
      size = info.size;
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw new UsageError(`--file ${name}=@${path}: ${(err as Error).message}`);
    }
    const stored: Upload = await uploadFile(options, name, createReadStream(path), size);
    files.push({ name, upload: stored.upload });
  }
  return files;
}

/** The files of a task as a table: direction, attempt, name, size, when. */
export function taskFilesTable(res: ListTaskFilesResponse): string {
  if (res.files.length === 0) return "no files";
  const table = makeTable(["KIND", "ATTEMPT", "NAME", "SIZE", "BYTES", "CREATED"]);
  for (const f of res.files) {
    table.push([f.direction === TaskFileDirection.INPUT ? "input" : "output", f.direction === TaskFileDirection.INPUT ? "-" : String(f.attempt), f.name, formatBytes(Number(f.size)), String(f.size), isoTime(f.createdAt)]);
  }
  return table.toString();
}

/** Writes a stream to the CLI's stdout with backpressure (binary-safe: process.stdout takes bytes). */
async function pipeToStdout(io: CliIO, stream: AsyncIterable<Buffer>): Promise<void> {
  const out = io.stdout;
  for await (const chunk of stream) {
    if (out.write(chunk) === false && out.once) await new Promise<void>((resolve) => out.once!("drain", resolve));
  }
}

/** Registers `artifacts` (list a task's files) and `artifacts get` (download one to stdout). */
export function registerFileCommands(program: Command, io: CliIO): void {
  const artifacts = program
    .command("artifacts")
    .description("List a task's files with their sizes: inputs, and the outputs its attempts kept")
    .addOption(new Option("--id <id>", "task id"))
    .option("--outputs", "only the outputs")
    .action(async (flags: { id?: string; outputs?: boolean }, cmd: Command) => {
      if (flags.id === undefined) throw new UsageError("required option '--id <id>' not specified");
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await taskClient(g).listTaskFiles({ id: parseTaskId(flags.id), direction: flags.outputs ? TaskFileDirection.OUTPUT : TaskFileDirection.UNSPECIFIED });
      printMessage(io, g.output, ListTaskFilesResponseSchema, res, taskFilesTable);
    });
  artifacts
    .command("get")
    .description("Write an output file of a task to stdout (the latest attempt's unless --attempt): task-cli artifacts get --id 7 report.csv > report.csv")
    .argument("<name>", "the file's name, as `task-cli artifacts --id N` lists it")
    .addOption(new Option("--id <id>", "task id (required)"))
    .option("--attempt <n>", "the attempt that made it")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      // `artifacts` has --id too, and takes it wherever it stands: read it merged with the parent's.
      const g = cmd.optsWithGlobals<GlobalOptions & { id?: string; attempt?: string }>();
      if (g.id === undefined) throw new UsageError("required option '--id <id>' not specified");
      const attempt = g.attempt === undefined ? undefined : parseInteger(g.attempt, "--attempt", 1, 1_000_000);
      await pipeToStdout(io, await downloadArtifact(g, parseTaskId(g.id), name, attempt));
    });
}
