// Creates one http_request task and waits for it: `TASK_ADDRESS=http://127.0.0.1:8080 npm run submit -- https://example.com/hook`.
import { createTaskClient, TaskStatus } from "task-service";
import { httpRequest } from "./plugin.js";

const url = process.argv[2];
if (!url) {
  console.error("usage: npm run submit -- <url>");
  process.exit(2);
}
const client = createTaskClient({ address: process.env.TASK_ADDRESS ?? "http://127.0.0.1:8080", token: process.env.TASK_API_TOKEN });
// The parameters are typed by the plugin's schema: a misspelt field does not compile.
const task = await client.submit(httpRequest, { method: "POST", url, headers: { "content-type": "application/json" }, body: JSON.stringify({ hello: "world" }) });
const done = await client.waitFor(task.id, { timeoutMs: 120_000 });
console.log(`task ${done.id}: ${TaskStatus[done.status]}${done.lastError ? ` (${done.lastError})` : ""}`);
console.log(JSON.stringify(done.result ?? {}));
