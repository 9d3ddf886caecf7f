import { createReadStream, createWriteStream } from "node:fs";
import { chmod, lstat, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Kysely } from "kysely";
import type { TaskFiles } from "../plugins/types.js";
import { FILE_NAME_RULE, isFileName, listTaskFiles, storeOutputs, type FileBytes, type FileCaps, type TaskFile } from "../store/files.js";
import type { Database } from "../store/schema.js";
import type { LogSink } from "../plugins/types.js";

/** What an attempt's files need. */
export interface AttemptFilesDeps {
  db: Kysely<Database>;
  bytes: FileBytes;
  caps: FileCaps;
  /** Where the attempt's directories are made (default: the system's temporary directory). */
  tmpDir?: string;
}

/**
 * One attempt's files (PluginContext.files). Nothing is read or made until the plugin asks, so an
 * attempt that uses no files costs nothing. Inputs are streamed from storage into a private
 * directory (shell) or to the plugin (open); outputs collect in a directory, whether a command wrote
 * them or the plugin handed them to artifact(), and store() streams them into storage when the
 * plugin has succeeded. cleanup() removes the directories whatever happened.
 */
export class AttemptFiles implements TaskFiles {
  private base: Promise<string> | undefined;
  private inputList: Promise<TaskFile[]> | undefined;
  private inDir: Promise<string> | undefined;
  private outDir: Promise<string> | undefined;

  constructor(
    private readonly deps: AttemptFilesDeps,
    private readonly taskId: string,
    private readonly attempt: number,
  ) {}

  private baseDir(): Promise<string> {
    return (this.base ??= (async () => {
      const dir = await mkdtemp(path.join(this.deps.tmpDir ?? os.tmpdir(), `task-${this.taskId}-${this.attempt}-`));
      // A shell command may run as another user (TASK_SHELL_USER): it must reach in/ and out/.
      await chmod(dir, 0o755);
      return dir;
    })());
  }

  private list(): Promise<TaskFile[]> {
    return (this.inputList ??= listTaskFiles(this.deps.db, this.taskId, "in"));
  }

  async inputs(): Promise<{ name: string; size: number }[]> {
    return (await this.list()).map((f) => ({ name: f.name, size: f.size }));
  }

  async *open(name: string): AsyncIterable<Buffer> {
    const files = await this.list();
    const file = files.find((f) => f.name === name);
    if (!file) throw new Error(`task ${this.taskId} has no input ${name}${files.length > 0 ? ` (its inputs: ${files.map((f) => f.name).join(", ")})` : " (it has no input files)"}`);
    yield* this.deps.bytes.read(file.id);
  }

  inputDir(): Promise<string> {
    return (this.inDir ??= (async () => {
      const dir = path.join(await this.baseDir(), "in");
      await mkdir(dir, { mode: 0o755 });
      for (const file of await this.list()) {
        const target = path.join(dir, file.name);
        await pipeline(Readable.from(this.deps.bytes.read(file.id)), createWriteStream(target, { mode: 0o644 }));
      }
      return dir;
    })());
  }

  outputDir(): Promise<string> {
    return (this.outDir ??= (async () => {
      const dir = path.join(await this.baseDir(), "out");
      await mkdir(dir);
      // World-writable: the command may run as an unprivileged user; the directory is the attempt's own.
      await chmod(dir, 0o777);
      return dir;
    })());
  }

  async artifact(name: string, data: AsyncIterable<Uint8Array | string> | Uint8Array | string): Promise<void> {
    if (!isFileName(name)) throw new Error(`artifact ${JSON.stringify(name)}: the name must be ${FILE_NAME_RULE}`);
    const target = path.join(await this.outputDir(), name);
    const source = typeof data === "string" || data instanceof Uint8Array ? Readable.from([Buffer.from(data)]) : Readable.from(data);
    // "wx": a second artifact of the same name is an error, not a silent overwrite.
    await pipeline(source, createWriteStream(target, { flags: "wx" }));
  }

  /**
   * Stores the output directory's regular files (when the plugin made it) as this attempt's
   * outputs, all visible at once when the last is stored (store/files.ts storeOutputs). Other
   * entries (directories, links, names storage cannot keep) are skipped with a system line.
   */
  async store(output: LogSink): Promise<TaskFile[]> {
    if (!this.outDir) return [];
    const dir = await this.outDir;
    const sources = [];
    for (const name of (await readdir(dir)).sort()) {
      const full = path.join(dir, name);
      const stat = await lstat(full);
      if (!stat.isFile() || !isFileName(name)) {
        output.write("system", `output ${name} not kept: only regular files named ${FILE_NAME_RULE} are`);
        continue;
      }
      sources.push({ name, open: () => createReadStream(full, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer> });
    }
    return storeOutputs(this.deps.db, this.deps.bytes, this.taskId, this.attempt, sources, this.deps.caps);
  }

  /** Removes the attempt's directories (nothing when none was made). */
  async cleanup(): Promise<void> {
    if (!this.base) return;
    const dir = await this.base.catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

