/**
 * TEST ONLY: runs one shell-plugin attempt in this process and prints the containment found and the
 * command's output as JSON, so a test can run the plugin as another (unprivileged) user.
 *   node --import tsx test/helpers/run-shell-task.ts 'COMMAND'
 */
import { createLogger } from "../../src/logger.js";
import { detectContainment } from "../../src/plugins/shell-containment.js";
import { shellPlugin } from "../../src/plugins/shell.js";

const lines: string[] = [];
const result = await shellPlugin({ enabled: true, killGraceMs: 200 }).run(
  { command: process.argv[2]! },
  { signal: new AbortController().signal, taskId: "1", attempt: 1, logger: createLogger("silent"), output: { write: (_stream, line) => void lines.push(line) } },
);
process.stdout.write(`${JSON.stringify({ containment: detectContainment(undefined), result, lines })}\n`);
