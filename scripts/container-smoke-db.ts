/**
 * The PostgreSQL of scripts/container-smoke.sh (no postgres image can be pulled there): the embedded one
 * `task-cli up` uses, on 127.0.0.1, under the given directory. Writes its URL and the run_query playground's to the given file, a line each, then runs
 * until SIGTERM or SIGINT and stops it.
 */
import { writeFile } from "node:fs/promises";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";

const [dataDir, urlFile] = process.argv.slice(2);
if (!dataDir || !urlFile) throw new Error("usage: container-smoke-db.ts <data dir> <url file>");
const database = await startEmbeddedPostgres(dataDir, createLogger("warn"));
await writeFile(urlFile, `${database.url}\n${database.playgroundUrl}\n`);
await new Promise<void>((resolve) => {
  process.once("SIGTERM", resolve);
  process.once("SIGINT", resolve);
});
await database.stop();
