/** docker-compose.yaml and docker-compose.demo.yaml against the code they deploy (parsed, not run: there is no Docker here). */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseDocument } from "yaml";
import { describe, expect, it } from "vitest";
import { checkListenSecurity } from "../../src/api/server.js";
import { isLoopbackHost, loadConfig, type Config } from "../../src/config.js";
import { root, read, exists, type Json, type JsonObject, parseYaml, isObject, cliVariables, configVariables, ENV_NAME, defaults, type ParsedCommand, parseCli, serviceCommands } from "../helpers/deployment.js";

interface ComposeService {
  name: string;
  spec: JsonObject;
  /** Built from the Dockerfile (or the image such a service builds): runs task-cli. */
  runsService: boolean;
  command: string[];
  env: Record<string, string>;
}

function composeServices(file: string): { compose: JsonObject; services: ComposeService[] } {
  const compose = parseYaml(file);
  expect(isObject(compose.services), `${file}: services`).toBe(true);
  const entries = Object.entries(compose.services as JsonObject);
  const builtImages = new Set(entries.flatMap(([, s]) => (isObject(s) && s.build !== undefined && typeof s.image === "string" ? [s.image] : [])));
  const services = entries.map(([name, spec]) => {
    if (!isObject(spec)) throw new Error(`${file}: service ${name} is not a mapping`);
    const runsService = spec.build !== undefined || (typeof spec.image === "string" && builtImages.has(spec.image));
    const env: Record<string, string> = {};
    if (Array.isArray(spec.environment)) {
      for (const item of spec.environment) {
        const [key, ...rest] = String(item).split("=");
        env[key!] = rest.join("=");
      }
    } else if (isObject(spec.environment)) {
      for (const [key, value] of Object.entries(spec.environment)) {
        expect(typeof value === "string" || typeof value === "number", `${file}: ${name}.environment.${key} is a string (quote booleans)`).toBe(true);
        env[key] = String(value);
      }
    }
    const command = spec.command === undefined ? [] : spec.command;
    if (runsService) expect(Array.isArray(command) && command.length > 0, `${file}: ${name} has a command in exec (list) form`).toBe(true);
    return { name, spec, runsService, command: Array.isArray(command) ? command.map(String) : [], env };
  });
  return { compose, services };
}

/** The configuration a service container resolves: the command's flags over its environment, as runServices does. */
function serviceConfig(service: ComposeService): { parsed: ParsedCommand; config: Config } {
  const parsed = parseCli(service.command);
  const host = parsed.opts.host as string | undefined;
  const enableShell = parsed.opts.enableShell as boolean | undefined;
  const config = loadConfig({ host, enableShell, allowInsecure: parsed.opts.insecure as boolean | undefined }, service.env);
  return { parsed, config };
}

/** The text of one service's block in a compose file, for comments (which parsing drops). */
function serviceBlock(file: string, name: string): string[] {
  const lines = read(file).split("\n");
  const start = lines.findIndex((l) => l === `  ${name}:`);
  expect(start, `${file}: service ${name} found`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && /^ {0,2}\S/.test(l));
  return lines.slice(start, end === -1 ? undefined : end);
}

function checkPostgres(file: string, service: ComposeService): void {
  expect(service.spec.image).toBe("postgres:16");
  for (const key of ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]) expect(service.env[key], `${file}: ${key}`).toBeTruthy();
  const healthcheck = service.spec.healthcheck as JsonObject;
  expect(JSON.stringify(healthcheck.test)).toContain("pg_isready");
  // Published on loopback only.
  for (const port of (service.spec.ports as Json[]) ?? []) expect(String(port)).toMatch(/^127\.0\.0\.1:/);
  const volumes = ((service.spec.volumes as Json[]) ?? []).map(String);
  expect(volumes.some((v) => /^[\w-]+:\/var\/lib\/postgresql\/data$/.test(v)), `${file}: a named data volume`).toBe(true);
  for (const volume of volumes.filter((v) => v.startsWith("./"))) expect(exists(volume.split(":")[0]!), `${file}: ${volume}`).toBe(true);
}

/** Roles, passwords and databases the postgres init scripts create. */
function initScriptDatabases(): Map<string, { role: string; password: string }> {
  const dir = "deploy/postgres-init";
  const databases = new Map<string, { role: string; password: string }>();
  for (const name of readdirSync(path.join(root, dir)).filter((f) => f.endsWith(".sql"))) {
    const sql = read(path.join(dir, name));
    const roles = new Map([...sql.matchAll(/CREATE ROLE (\w+)\b[^;]*PASSWORD '([^']*)'/gi)].map((m) => [m[1]!, m[2]!]));
    for (const m of sql.matchAll(/CREATE DATABASE (\w+) OWNER (\w+)/gi)) databases.set(m[1]!, { role: m[2]!, password: roles.get(m[2]!) ?? "" });
  }
  return databases;
}

describe.each(["docker-compose.yaml", "docker-compose.demo.yaml"])("%s", (file) => {
  const { compose, services } = composeServices(file);
  const names = new Set(services.map((s) => s.name));

  it("parses, names its project, and declares the volumes it uses", () => {
    expect(typeof compose.name).toBe("string");
    expect(compose.version, "the obsolete version key").toBeUndefined();
    const declared = Object.keys((compose.volumes as JsonObject) ?? {});
    for (const s of services) {
      for (const v of ((s.spec.volumes as Json[]) ?? []).map(String)) {
        const source = v.split(":")[0]!;
        if (!source.startsWith(".") && !source.startsWith("/")) expect(declared, `${s.name}: volume ${source}`).toContain(source);
      }
    }
  });

  it("runs PostgreSQL 16 with a healthcheck", () => {
    const postgres = services.find((s) => s.name === "postgres");
    expect(postgres).toBeDefined();
    checkPostgres(file, postgres!);
  });

  it("depends only on services it has, with conditions", () => {
    for (const s of services) {
      const dependsOn = s.spec.depends_on;
      if (dependsOn === undefined) continue;
      expect(isObject(dependsOn), `${s.name}: depends_on with conditions`).toBe(true);
      for (const [target, condition] of Object.entries(dependsOn as JsonObject)) {
        expect(names, `${s.name} depends on ${target}`).toContain(target);
        expect(["service_healthy", "service_completed_successfully", "service_started"]).toContain((condition as JsonObject).condition);
      }
    }
  });

  it("uses only real configuration variables", () => {
    // Comments may also name the CLI's own variables (TASK_TOKEN); the containers' environment may not.
    const allowed = new Set([...configVariables, ...cliVariables]);
    for (const name of read(file).match(ENV_NAME) ?? []) expect(allowed, `${file}: ${name}`).toContain(name);
    for (const s of services.filter((x) => x.runsService)) {
      for (const key of Object.keys(s.env)) expect(configVariables, `${file}: ${s.name}.environment.${key}`).toContain(key);
    }
  });

  it("runs existing task-cli commands with valid flags and configuration", () => {
    for (const s of services.filter((x) => x.runsService)) {
      const { parsed, config } = serviceConfig(s);
      expect(serviceCommands, `${s.name}: ${s.command.join(" ")}`).toContain(parsed.command);
      // A real database, never the embedded one inside a container.
      expect(config.databaseUrl, `${s.name}: DATABASE_URL`).toBeDefined();
      const url = new URL(config.databaseUrl!);
      expect(names, `${s.name}: DATABASE_URL names a service of this file`).toContain(url.hostname);
      const postgres = services.find((x) => x.name === url.hostname)!;
      expect(decodeURIComponent(url.username)).toBe(postgres.env.POSTGRES_USER);
      expect(decodeURIComponent(url.password)).toBe(postgres.env.POSTGRES_PASSWORD);
      expect(url.pathname).toBe(`/${postgres.env.POSTGRES_DB}`);
      if (parsed.command === "server" || parsed.command === "up") {
        // The server refuses a non-loopback address without tokens or --insecure: so must the file.
        expect(() => checkListenSecurity(config), `${s.name}: listen security`).not.toThrow();
        expect(config.port, `${s.name}: the default API port`).toBe(defaults.port);
        const ports = ((s.spec.ports as Json[]) ?? []).map(String);
        expect(ports.length, `${s.name}: publishes the API`).toBeGreaterThan(0);
        for (const port of ports) expect(port, `${s.name}: published on loopback, to the configured port`).toBe(`127.0.0.1:${config.port}:${config.port}`);
      }
      if (config.metricsPort > 0) {
        // startMetricsServer binds TASK_HOST: on loopback nothing outside the container could scrape it.
        expect(isLoopbackHost(config.host), `${s.name}: metrics reachable from other containers`).toBe(false);
        expect(JSON.stringify((s.spec.healthcheck as JsonObject | undefined)?.test ?? "")).toContain(`:${config.metricsPort}/metrics`);
      }
    }
  });

  it("enables shell tasks only explicitly, next to a warning", () => {
    for (const s of services.filter((x) => x.runsService)) {
      const { config } = serviceConfig(s);
      expect(s.command, `${s.name}: shell is enabled by TASK_ENABLE_SHELL, where the warning is, not a flag`).not.toContain("--enable-shell");
      if (!config.enableShell) continue;
      expect(s.env.TASK_ENABLE_SHELL).toBe("true");
      const block = serviceBlock(file, s.name);
      const at = block.findIndex((l) => /^\s*TASK_ENABLE_SHELL:/.test(l));
      expect(at, `${s.name}: TASK_ENABLE_SHELL set in the service itself`).toBeGreaterThan(0);
      const before = block.slice(Math.max(0, at - 4), at).filter((l) => /^\s*#/.test(l)).join(" ");
      expect(before, `${s.name}: a comment above TASK_ENABLE_SHELL says what it means`).toMatch(/remote code execution/i);
    }
  });
});

describe("docker-compose.yaml (development)", () => {
  const { services } = composeServices("docker-compose.yaml");

  it("is PostgreSQL only, and its header's DATABASE_URL reaches it", () => {
    expect(services.map((s) => s.name)).toEqual(["postgres"]);
    const pg = services[0]!;
    const url = `postgres://${pg.env.POSTGRES_USER}:${pg.env.POSTGRES_PASSWORD}@127.0.0.1:5432/${pg.env.POSTGRES_DB}`;
    expect((pg.spec.ports as Json[]).map(String)).toContain("127.0.0.1:5432:5432");
    const header = read("docker-compose.yaml").split("\n").filter((l) => l.startsWith("#")).join("\n");
    expect(header).toContain("docker compose up -d");
    expect(header).toContain(`DATABASE_URL=${url} ./bin/task-cli.js`);
  });
});

describe("docker-compose.demo.yaml (the whole system)", () => {
  const file = "docker-compose.demo.yaml";
  const { services } = composeServices(file);
  const byName = new Map(services.map((s) => [s.name, s]));

  it("has postgres, a one-shot migrate, a server and two workers, all but postgres from the Dockerfile", () => {
    expect([...byName.keys()].sort()).toEqual(["migrate", "postgres", "server", "worker"]);
    for (const name of ["migrate", "server", "worker"]) expect(byName.get(name)!.runsService, name).toBe(true);
    expect(byName.get("migrate")!.command).toEqual(["migrate"]);
    expect(byName.get("migrate")!.spec.restart).toBe("no");
    expect(byName.get("migrate")!.spec.depends_on).toEqual({ postgres: { condition: "service_healthy" } });
    expect(byName.get("server")!.command).toEqual(["server", "--host", "0.0.0.0"]);
    expect(byName.get("worker")!.command).toEqual(["serve", "-n", "10"]);
    expect((byName.get("worker")!.spec.deploy as JsonObject).replicas).toBe(2);
    for (const name of ["server", "worker"]) {
      expect(byName.get(name)!.spec.depends_on, name).toEqual({ migrate: { condition: "service_completed_successfully" } });
    }
  });

  it("gives the server tokens or an explicit insecure switch", () => {
    const { config } = serviceConfig(byName.get("server")!);
    expect(config.apiTokens.length > 0 || config.allowInsecure).toBe(true);
  });

  it("points run_query at the playground the init script creates, with the server and workers agreeing", () => {
    const databases = initScriptDatabases();
    expect(databases.has("playground")).toBe(true);
    const server = serviceConfig(byName.get("server")!).config;
    const worker = serviceConfig(byName.get("worker")!).config;
    expect(Object.keys(server.queryTargets)).toContain("playground");
    // The server checks shell and run_query targets when a task is created, the workers when it runs.
    expect(worker.queryTargets).toEqual(server.queryTargets);
    expect(worker.enableShell).toBe(server.enableShell);
    for (const [target, dsn] of Object.entries(server.queryTargets)) {
      const url = new URL(dsn);
      const db = databases.get(url.pathname.slice(1));
      expect(db, `target ${target}: a database the init script creates`).toBeDefined();
      expect(decodeURIComponent(url.username)).toBe(db!.role);
      expect(decodeURIComponent(url.password)).toBe(db!.password);
      expect(byName.has(url.hostname), `target ${target}: host is a service`).toBe(true);
      // Never the service's own database, nor its superuser.
      expect(url.pathname).not.toBe(`/${byName.get("postgres")!.env.POSTGRES_DB}`);
      expect(decodeURIComponent(url.username)).not.toBe(byName.get("postgres")!.env.POSTGRES_USER);
    }
  });

  it("closes the service's database to other roles", () => {
    const sql = read("deploy/postgres-init/10-playground.sql");
    expect(sql).toMatch(/REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database\(\)/);
    expect(sql).toMatch(/NOSUPERUSER/);
  });
});

// ---------------------------------------------------------------------------------------------
// Helm chart

describe("docker-compose.yaml and docker-compose.demo.yaml together", () => {
  const files = ["docker-compose.yaml", "docker-compose.demo.yaml"];

  it("run side by side: different projects, no host port published twice", () => {
    const published = new Map<string, string>();
    const projects = new Set<string>();
    for (const file of files) {
      const { compose, services } = composeServices(file);
      projects.add(compose.name as string);
      for (const s of services) {
        for (const port of ((s.spec.ports as Json[]) ?? []).map(String)) {
          const host = port.split(":").slice(0, -1).join(":");
          expect(published.get(host), `${file}: ${s.name} publishes ${host}, as ${published.get(host)} does`).toBeUndefined();
          published.set(host, `${file} ${s.name}`);
        }
      }
      expect(read(file), `${file}: says it needs Compose v2`).toMatch(/Needs Docker Compose v2/);
    }
    expect(projects.size).toBe(2);
  });

  // Debian's docker-compose 1.29 knows the Compose specification except the top-level `name:` (a v2
  // key): it checks each file with that line taken out and the name given as the project (-p) instead.
  // .ci/run installs it; elsewhere the check runs when it is there.
  const compose = spawnSync("docker-compose", ["version", "--short"], { encoding: "utf8" });
  const haveCompose = compose.status === 0;
  it.skipIf(!haveCompose && process.env.CI !== "true").each(files)("%s passes docker-compose config", (file) => {
    expect(haveCompose, "docker-compose is installed (apt-get install docker-compose)").toBe(true);
    const text = read(file);
    const name = /^name: (\S+)$/m.exec(text)![1]!;
    const dir = mkdtempSync(path.join(os.tmpdir(), "task-compose-"));
    try {
      const copy = path.join(dir, "compose.yaml");
      writeFileSync(copy, text.replace(/^name: .*$/m, ""));
      const result = spawnSync("docker-compose", ["-p", name, "--project-directory", root, "-f", copy, "config"], { encoding: "utf8" });
      expect(result.stderr.trim(), "docker-compose config").toBe("");
      expect(result.status).toBe(0);
      const resolved = parseDocument(result.stdout).toJS() as JsonObject;
      expect(Object.keys(resolved.services as JsonObject).sort()).toEqual(Object.keys(parseYaml(file).services as JsonObject).sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
