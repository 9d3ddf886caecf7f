import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Kysely } from "kysely";
import { InvalidArgumentError, TaskNotFoundError } from "../errors.js";
import { TaskFileDirection, TaskFileSchema, type ListTaskFilesRequest, type TaskFile as TaskFileMessage, type TaskFileInput } from "../gen/task/v1/task_pb.js";
import { FILE_NAME_RULE, isFileName, listTaskFiles, type TaskFile } from "../store/files.js";
import type { Database } from "../store/schema.js";
import { findTask } from "../store/tasks.js";
import { validateTaskId } from "./validate.js";

/** Input files one CreateTask may name. */
export const MAX_INPUT_FILES = 20;

/** The path a file's bytes are downloaded from, on the API's port (artifact-download.ts). */
export function artifactPath(taskId: string, name: string, attempt: number): string {
  return `/tasks/${taskId}/artifacts/${encodeURIComponent(name)}?attempt=${attempt}`;
}

/** A CreateTask's `files`, checked: names valid and unique, references present, not too many. */
export function validateFileInputs(files: TaskFileInput[], prefix = ""): { name: string; upload: string }[] {
  const problems: { field: string; reason: string }[] = [];
  if (files.length > MAX_INPUT_FILES) problems.push({ field: `${prefix}files`, reason: `at most ${MAX_INPUT_FILES} files` });
  const seen = new Set<string>();
  files.forEach((f, i) => {
    if (!isFileName(f.name)) problems.push({ field: `${prefix}files[${i}].name`, reason: FILE_NAME_RULE });
    else if (seen.has(f.name)) problems.push({ field: `${prefix}files[${i}].name`, reason: `${f.name} is named twice` });
    seen.add(f.name);
    if (!/^up_[A-Za-z0-9_-]{1,64}$/.test(f.upload)) problems.push({ field: `${prefix}files[${i}].upload`, reason: "must be a reference POST /uploads returned (up_...)" });
  });
  if (problems.length > 0) throw new InvalidArgumentError(problems);
  return files.map((f) => ({ name: f.name, upload: f.upload }));
}

/** A stored file as the API shows it. */
export function fileToProto(file: TaskFile): TaskFileMessage {
  return create(TaskFileSchema, {
    name: file.name,
    direction: file.direction === "in" ? TaskFileDirection.INPUT : TaskFileDirection.OUTPUT,
    attempt: file.attempt,
    size: BigInt(file.size),
    sha256: file.sha256,
    createdAt: timestampFromDate(file.createdAt),
    downloadPath: file.direction === "out" ? artifactPath(file.taskId, file.name, file.attempt) : "",
  });
}

/** ListTaskFiles: a task's complete files (NotFound for no such task). */
export async function listFilesOfTask(db: Kysely<Database>, req: ListTaskFilesRequest): Promise<{ files: TaskFileMessage[] }> {
  const id = validateTaskId(req.id);
  const direction = req.direction === TaskFileDirection.INPUT ? "in" : req.direction === TaskFileDirection.OUTPUT ? "out" : undefined;
  const files = await listTaskFiles(db, id, direction);
  if (files.length === 0 && !(await findTask(db, id))) throw new TaskNotFoundError(id);
  return { files: files.map(fileToProto) };
}
