/**
 * The task service's plugin SDK: the public entry of the package (`import ... from "task-service"`).
 * Everything else in the package is internal and may change without notice.
 *
 * - definePlugin: declare a task type (name, zod parameter schema, defaults, run).
 * - startWorker: run a worker process serving your types (as `task-cli serve` runs the built-ins).
 * - startAgent: run your types on a remote agent: no database, only the server's address and an agent token.
 * - PermanentTaskError: throw it from run to fail a task without retrying.
 * - createTaskClient: the typed Connect client of the API.
 */
export { definePlugin, type PluginDefaultsInput, type PluginDefinition, type TaskContext, type TaskPlugin } from "./plugin.js";
export { startWorker, type BuiltinTypeName, type StartWorkerOptions, type Worker } from "./worker.js";
export { startAgent, type Agent, type StartAgentOptions } from "./agent.js";
export { createTaskClient, type SubmitOptions, type TaskClient, type TaskClientOptions, type TypedTaskType } from "./client.js";
export { uploadFile, downloadArtifact, type Upload, type FileTransferOptions } from "./files.js";
export { PermanentTaskError } from "../errors.js";
export type { AttemptLease, LogSink as OutputSink, TaskFiles } from "../plugins/types.js";
export type { Logger } from "../logger.js";
export { TaskStatus, type Task, type TaskType } from "../gen/task/v1/task_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
/** The zod the SDK is built with: define parameter schemas with it, so they convert to JSON Schema exactly. */
export { z } from "zod";
