// A worker process serving http_request: `DATABASE_URL=... npm run worker` (the URL `task-cli up` prints).
import { startWorker } from "task-service";
import { httpRequest } from "./plugin.js";

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error("set DATABASE_URL (task-cli up prints it)");
  process.exit(2);
}
const worker = await startWorker({ databaseUrl, plugins: [httpRequest], concurrency: 20 });
console.error(`worker ${worker.workerId} serving http_request; Ctrl-C stops it`);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void worker.stop().then(() => process.exit(0)));
}
