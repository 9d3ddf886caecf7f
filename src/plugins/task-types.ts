import type { TaskType } from "./types.js";
import { noopParameters, runQueryParameters, sendEmailParameters, shellParameters } from "./schemas.js";

/** What decides which built-in types are enabled. */
export interface TaskTypeOptions {
  enableShell: boolean;
}

/** The built-in task types as the control plane knows them (names, schemas, defaults). */
export function builtinTaskTypes(options: TaskTypeOptions): TaskType[] {
  return [
    {
      name: "send_email",
      description: "Sends an email through the configured SMTP server (or into the local outbox when none is set).",
      parameters: sendEmailParameters,
      defaults: { timeoutMs: 60_000, maxAttempts: 5 },
    },
    {
      name: "run_query",
      description: "Runs one SQL statement against a named target database, read-only, with a row cap.",
      parameters: runQueryParameters,
      defaults: { timeoutMs: 30_000, maxAttempts: 3 },
    },
    {
      name: "shell",
      description: "Runs a command with bash -c in its own process group, capturing its output.",
      parameters: shellParameters,
      defaults: { timeoutMs: 300_000, maxAttempts: 3 },
      disabledReason: options.enableShell ? undefined : "start the service with --enable-shell (or TASK_ENABLE_SHELL=true) to allow it",
    },
    {
      name: "noop",
      description: "Does nothing for sleep_ms, then succeeds (or fails with `fail`); for demos and benchmarks.",
      parameters: noopParameters,
      defaults: { timeoutMs: 60_000, maxAttempts: 3 },
    },
  ];
}
