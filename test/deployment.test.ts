/**
 * Consistency checks of the deployment files (Dockerfile, compose files, Helm chart) against the code
 * they deploy: the CLI's commands and flags, the configuration's variable names and defaults, the
 * listen-security rule, and what `npm install --omit=dev` leaves in the image. Docker, Compose and Helm
 * are not run here: the YAML is parsed, and the Helm templates (Go templates, not YAML until rendered)
 * are checked with regular expressions.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseDocument } from "yaml";
import { checkListenSecurity } from "../src/api/server.js";
import { buildProgram } from "../src/cli/program.js";
import { configEnvNames, isLoopbackHost, loadConfig, type Config } from "../src/config.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const read = (file: string) => readFileSync(path.join(root, file), "utf8");
const exists = (file: string) => existsSync(path.join(root, file));

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Parses one YAML file strictly (no errors or warnings, no duplicate keys), with `<<` merge keys as Compose reads them. */
function parseYaml(file: string): JsonObject {
  const doc = parseDocument(read(file), { merge: true, uniqueKeys: true, prettyErrors: true });
  expect(doc.errors.map(String), `${file}: YAML errors`).toEqual([]);
  expect(doc.warnings.map(String), `${file}: YAML warnings`).toEqual([]);
  const value = doc.toJS() as Json;
  expect(value, `${file}: top level is a mapping`).toBeTypeOf("object");
  return value as JsonObject;
}

const isObject = (v: Json | undefined): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** The environment variables the service reads (src/config.ts), and those the CLI's own flags read (TASK_ADDRESS, TASK_TOKEN, ...). */
const configVariables = new Set(Object.values(configEnvNames));
const cliVariables = new Set<string>();
{
  const program = buildProgram({ stdout: { write: () => true }, stderr: { write: () => true }, isTTY: false });
  const walk = (cmd: typeof program) => {
    for (const option of cmd.options) if (option.envVar) cliVariables.add(option.envVar);
    cmd.commands.forEach(walk);
  };
  walk(program);
}
/** What looks like one of ours: a name anything here could mistype. */
const ENV_NAME = /\b(?:TASK_[A-Z0-9_]+|DATABASE_URL|SMTP_[A-Z0-9_]+|LOG_LEVEL)\b/g;

/** The configuration's defaults, as a process with an empty environment gets them. */
const defaults = loadConfig({}, {});

interface ParsedCommand {
  command: string;
  opts: Record<string, unknown>;
}

/**
 * Parses argv (without `task-cli`) with the real program, its actions replaced so nothing runs: an
 * unknown command or flag, a missing flag value or an extra argument throws as the CLI would refuse it.
 */
function parseCli(args: string[]): ParsedCommand {
  let stderr = "";
  const program = buildProgram({ stdout: { write: () => true }, stderr: { write: (s: string) => (stderr += s) }, isTTY: false });
  let parsed: ParsedCommand | undefined;
  for (const cmd of program.commands) {
    cmd.action((opts: Record<string, unknown>) => {
      parsed = { command: cmd.name(), opts };
    });
  }
  try {
    program.parse(["node", "task-cli", ...args]);
  } catch (err) {
    throw new Error(`task-cli ${args.join(" ")}: ${stderr.trim() || String(err)}`);
  }
  if (!parsed) throw new Error(`task-cli ${args.join(" ")}: ran no command`);
  return parsed;
}

const serviceCommands = new Set(["server", "serve", "migrate", "up"]);

describe("the CLI commands the deployment files use", () => {
  it("exist in the program", () => {
    const program = buildProgram({ stdout: { write: () => true }, stderr: { write: () => true }, isTTY: false });
    const names = program.commands.map((c) => c.name());
    for (const name of serviceCommands) expect(names).toContain(name);
  });

  it("parseCli refuses what the CLI refuses", () => {
    expect(parseCli(["serve", "-n", "10"]).command).toBe("serve");
    expect(() => parseCli(["serve", "--no-such-flag"])).toThrow(/unknown option/);
    expect(() => parseCli(["serverr"])).toThrow();
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  keyword: string;
  args: string;
}

/** The Dockerfile's instructions, with continuation lines joined and comments dropped. */
function dockerfileInstructions(): Instruction[] {
  const lines = read("Dockerfile").split("\n");
  const instructions: Instruction[] = [];
  let current = "";
  for (const line of lines) {
    if (/^\s*#/.test(line) || (current === "" && line.trim() === "")) continue;
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    const match = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(current);
    if (!match) throw new Error(`Dockerfile: cannot read "${current}"`);
    instructions.push({ keyword: match[1]!.toUpperCase(), args: match[2]!.trim() });
    current = "";
  }
  expect(current, "Dockerfile ends in a continuation line").toBe("");
  return instructions;
}

function only(instructions: Instruction[], keyword: string): Instruction {
  const found = instructions.filter((i) => i.keyword === keyword);
  expect(found, `one ${keyword}`).toHaveLength(1);
  return found[0]!;
}

/** Exec form (a JSON array), which receives signals directly and takes `command` arguments. */
function execForm(instruction: Instruction): string[] {
  const value: unknown = JSON.parse(instruction.args);
  expect(Array.isArray(value) && value.every((v) => typeof v === "string"), `${instruction.keyword} in exec form`).toBe(true);
  return value as string[];
}

/** Whether a .dockerignore pattern (the simple forms used here) excludes a path. */
function dockerIgnored(patterns: string[], file: string): boolean {
  const clean = file.replace(/^\.\//, "").replace(/\/$/, "");
  return patterns.some((p) => {
    const pattern = p.replace(/^\//, "").replace(/\/$/, "");
    if (pattern.includes("*")) {
      const re = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}(/|$)`);
      return re.test(clean);
    }
    return clean === pattern || clean.startsWith(`${pattern}/`);
  });
}

describe("Dockerfile", () => {
  const instructions = dockerfileInstructions();
  const dockerignore = read(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));

  it("builds on node:20-bookworm-slim and installs production dependencies only", () => {
    expect(only(instructions, "FROM").args).toBe("node:20-bookworm-slim");
    expect(only(instructions, "WORKDIR").args).toBe("/app");
    const install = instructions.filter((i) => i.keyword === "RUN" && /\bnpm (install|ci)\b/.test(i.args));
    expect(install).toHaveLength(1);
    expect(install[0]!.args).toMatch(/npm install --omit=dev\b/);
  });

  it("copies only files that exist and that .dockerignore does not exclude", () => {
    const copies = instructions.filter((i) => i.keyword === "COPY" || i.keyword === "ADD");
    expect(copies.length).toBeGreaterThan(0);
    const copied: string[] = [];
    for (const copy of copies) {
      expect(copy.keyword, "COPY, not ADD").toBe("COPY");
      const words = copy.args.split(/\s+/).filter((w) => !w.startsWith("--"));
      expect(words.length, `COPY ${copy.args}: sources and a destination`).toBeGreaterThanOrEqual(2);
      for (const source of words.slice(0, -1)) {
        expect(exists(source), `COPY source ${source} exists`).toBe(true);
        expect(dockerIgnored(dockerignore, source), `COPY source ${source} is not excluded by .dockerignore`).toBe(false);
        copied.push(source.replace(/^\.\//, "").replace(/\/$/, ""));
      }
    }
    // What the running service reads: the lock file for the install, the entry point, the sources
    // tsx compiles (with their tsconfig) and the SQL migrations (src/store/migrate.ts reads ../../migrations).
    for (const needed of ["package.json", "package-lock.json", "bin", "src", "migrations", "tsconfig.json"]) {
      expect(copied, `the image gets ${needed}`).toContain(needed);
    }
    for (const excluded of ["node_modules", ".task", ".git", "test", "scratch"]) {
      expect(dockerIgnored(dockerignore, excluded), `.dockerignore excludes ${excluded}`).toBe(true);
    }
  });

  it("runs bin/task-cli.js, the package's bin, with a service command", () => {
    const entrypoint = execForm(only(instructions, "ENTRYPOINT"));
    // tini reaps what shell tasks leave behind; it must be installed for the entrypoint to work.
    expect(entrypoint).toEqual(["tini", "--", "node", "bin/task-cli.js"]);
    expect(read("Dockerfile")).toMatch(/apt-get install[^\n]*\btini\b/);
    expect(exists(entrypoint[3]!)).toBe(true);
    const pkg = JSON.parse(read("package.json")) as { bin: Record<string, string> };
    expect(Object.values(pkg.bin)).toContain(entrypoint[3]);
    const cmd = execForm(only(instructions, "CMD"));
    expect(parseCli(cmd).command).toBe("server");
  });

  it("runs as the non-root node user and exposes the default API port", () => {
    const user = only(instructions, "USER").args;
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(["node", "node:node", "1000", "1000:1000"]).toContain(user);
    expect(only(instructions, "EXPOSE").args).toBe(String(defaults.port));
    const healthcheck = only(instructions, "HEALTHCHECK").args;
    expect(healthcheck).toContain("/healthz");
    expect(healthcheck).toContain("127.0.0.1");
    expect(healthcheck).toContain(String(defaults.port));
  });

  it("sets only real configuration variables", () => {
    for (const name of read("Dockerfile").match(ENV_NAME) ?? []) expect(configVariables, `Dockerfile: ${name}`).toContain(name);
  });
});

describe("npm install --omit=dev keeps what the service imports", () => {
  const pkg = JSON.parse(read("package.json")) as { dependencies: Record<string, string>; devDependencies?: Record<string, string> };

  function sourceFiles(dir: string): string[] {
    return readdirSync(path.join(root, dir)).flatMap((name) => {
      const rel = path.join(dir, name);
      if (statSync(path.join(root, rel)).isDirectory()) return sourceFiles(rel);
      return /\.(ts|js|mjs|cjs)$/.test(name) && !/\.test\.ts$/.test(name) ? [rel] : [];
    });
  }

  /** Packages a file loads at run time: type-only imports are erased by tsx and need nothing. */
  function runtimeImports(text: string): string[] {
    const specifiers: string[] = [];
    const fromClause = /^\s*(?:import|export)\s+(type\s+)?((?:[\w$*\s,]|\{[^}]*\})*?)\s*from\s*["']([^"']+)["']/gm;
    for (const m of text.matchAll(fromClause)) {
      const braces = /\{([^}]*)\}/.exec(m[2] ?? "");
      const outside = (m[2] ?? "").replace(/\{[^}]*\}/, "").replace(/[\s,]/g, "");
      const allTypes = braces !== null && outside === "" && braces[1]!.split(",").map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith("type "));
      if (!m[1] && !allTypes) specifiers.push(m[3]!);
    }
    for (const m of text.matchAll(/^\s*import\s*["']([^"']+)["']/gm)) specifiers.push(m[1]!);
    for (const m of text.matchAll(/\b(?:import|require)\(\s*["']([^"']+)["']\s*\)/g)) specifiers.push(m[1]!);
    return specifiers;
  }

  const packageName = (specifier: string) => specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/");

  it("every package src/ and bin/ import at run time is a dependency, not a devDependency", () => {
    const files = [...sourceFiles("src"), ...sourceFiles("bin")];
    const problems: string[] = [];
    let seen = 0;
    for (const file of files) {
      for (const specifier of runtimeImports(read(file))) {
        if (specifier.startsWith(".") || specifier.startsWith("node:") || builtinModules.includes(specifier)) continue;
        seen++;
        const name = packageName(specifier);
        if (pkg.dependencies[name]) continue;
        problems.push(`${file} imports ${specifier}, ${pkg.devDependencies?.[name] ? "a devDependency (dropped by --omit=dev)" : "not in package.json"}`);
      }
    }
    expect(seen, "found the imports").toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });

  it("sees through the forms of import the sources use", () => {
    const text = [
      'import { Command, Option } from "commander";',
      'import type { Kysely } from "kysely";',
      'import { type Pool, type PoolClient } from "pg";',
      'import pino, { type Logger } from "pino";',
      'export { x } from "zod";',
      'import "tsx/esm/api";',
      'const m = await import("cli-table3");',
      'const q = sql`select * from "tasks"`;',
    ].join("\n");
    expect(runtimeImports(text)).toEqual(["commander", "pino", "zod", "tsx/esm/api", "cli-table3"]);
  });
});

// ---------------------------------------------------------------------------------------------
// Compose files

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

const chartDir = "charts/task-service";
const templateDir = `${chartDir}/templates`;

describe("Helm chart", () => {
  const chart = parseYaml(`${chartDir}/Chart.yaml`);
  const values = parseYaml(`${chartDir}/values.yaml`);
  const templateFiles = readdirSync(path.join(root, templateDir)).sort();
  const templates = new Map(templateFiles.map((f) => [f, read(`${templateDir}/${f}`)]));
  const template = (name: string) => {
    const text = templates.get(name);
    expect(text, `${templateDir}/${name}`).toBeDefined();
    return text!;
  };

  /** The value at a dotted path of values.yaml, or undefined when a key on the way is missing. */
  function valueAt(dotted: string): { found: boolean; value?: Json } {
    let node: Json = values;
    for (const key of dotted.split(".")) {
      if (!isObject(node) || !Object.hasOwn(node, key)) return { found: false };
      node = node[key]!;
    }
    return { found: true, value: node };
  }

  /** `{{ .Values.a.b }}` replaced by the default value: enough for the plain substitutions in args. */
  const substitute = (text: string) =>
    text.replace(/\{\{-?\s*\.Values\.([\w.]+)\s*-?\}\}/g, (_, p: string) => {
      const { found, value } = valueAt(p);
      expect(found, `.Values.${p}`).toBe(true);
      return String(value);
    });

  /** The args of a template's container, as a list of strings. */
  function templateArgs(name: string): string[] {
    const match = /^\s*args:\s*(\[.*\])\s*$/m.exec(template(name));
    expect(match, `${name}: args as a one-line list`).not.toBeNull();
    return parseDocument(substitute(match![1]!)).toJS() as string[];
  }

  it("has the chart metadata, versioned like the package", () => {
    expect(chart.apiVersion).toBe("v2");
    expect(chart.name).toBe("task-service");
    expect(chart.version).toBe("0.1.0");
    expect(chart.appVersion).toBe("0.1.0");
    expect(chart.appVersion).toBe((JSON.parse(read("package.json")) as { version: string }).version);
  });

  it("has the expected templates", () => {
    for (const name of ["_helpers.tpl", "secret.yaml", "migrate-job.yaml", "server-deployment.yaml", "server-service.yaml", "worker-deployment.yaml", "NOTES.txt"]) {
      expect(templateFiles).toContain(name);
    }
    expect(templateFiles.some((f) => /worker.*service/.test(f)), "workers have no Service").toBe(false);
  });

  it("references only values that exist in values.yaml, and uses every value", () => {
    const referenced = new Set<string>();
    for (const [name, text] of templates) {
      for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][\w]*)+)/g)) {
        const p = m[1]!.slice(1);
        referenced.add(p);
        expect(valueAt(p).found, `${name}: .Values.${p} is in values.yaml`).toBe(true);
      }
    }
    const leaves: string[] = [];
    const walk = (node: Json, prefix: string) => {
      if (isObject(node) && Object.keys(node).length > 0) for (const [k, v] of Object.entries(node)) walk(v, prefix ? `${prefix}.${k}` : k);
      else leaves.push(prefix);
    };
    walk(values, "");
    for (const leaf of leaves) {
      expect([...referenced].some((r) => leaf === r || leaf.startsWith(`${r}.`)), `values.yaml: ${leaf} is used by a template`).toBe(true);
    }
  });

  it("has balanced template blocks and defines every template it includes", () => {
    const defined = new Set([...template("_helpers.tpl").matchAll(/\{\{-?\s*define\s+"([^"]+)"/g)].map((m) => m[1]!));
    for (const [name, text] of templates) {
      const opens = [...text.matchAll(/\{\{-?\s*(?:if|with|range|define|block)\b/g)].length;
      const ends = [...text.matchAll(/\{\{-?\s*end\s*-?\}\}/g)].length;
      expect(ends, `${name}: {{ end }} for every block`).toBe(opens);
      for (const m of text.matchAll(/\b(?:include|template)\s+"([^"]+)"/g)) expect(defined, `${name}: include "${m[1]}"`).toContain(m[1]);
    }
  });

  it("uses only real configuration variables", () => {
    const allowed = new Set([...configVariables, ...cliVariables]);
    for (const [name, text] of [...templates, ["values.yaml", read(`${chartDir}/values.yaml`)] as const]) {
      for (const variable of text.match(ENV_NAME) ?? []) expect(allowed, `${name}: ${variable}`).toContain(variable);
    }
    // Containers' env entries: configuration variables only (the CLI's TASK_ADDRESS/TASK_TOKEN are for clients).
    for (const [name, text] of templates) {
      for (const m of text.matchAll(/-\s+name:\s+([A-Z][A-Z0-9_]*)\s*$/gm)) expect(configVariables, `${name}: env ${m[1]}`).toContain(m[1]);
    }
  });

  it("runs existing task-cli commands", () => {
    expect(parseCli(templateArgs("server-deployment.yaml")).command).toBe("server");
    expect(templateArgs("server-deployment.yaml")).toEqual(["server", "--host", "0.0.0.0"]);
    const worker = templateArgs("worker-deployment.yaml");
    expect(parseCli(worker).command).toBe("serve");
    expect(template("worker-deployment.yaml")).toContain('args: ["serve", "-n", "{{ .Values.worker.concurrency }}"]');
    expect(parseCli(templateArgs("migrate-job.yaml")).command).toBe("migrate");
  });

  it("defaults to two servers and two workers of ten slots, on the config's default port", () => {
    expect(valueAt("server.replicas").value).toBe(2);
    expect(valueAt("worker.replicas").value).toBe(2);
    expect(valueAt("worker.concurrency").value).toBe(defaults.workerConcurrency);
    expect(valueAt("server.port").value).toBe(defaults.port);
    expect(valueAt("server.service.port").value).toBe(defaults.port);
    expect(valueAt("server.service.type").value).toBe("ClusterIP");
    expect(valueAt("enableShell").value).toBe(false);
  });

  it("refuses to render an API on 0.0.0.0 without tokens unless allowInsecure, and without a database", () => {
    const helpers = template("_helpers.tpl");
    const start = helpers.indexOf('define "task-service.validate"');
    expect(start).toBeGreaterThan(0);
    const next = helpers.indexOf("define ", start + 1);
    const validate = helpers.slice(start, next === -1 ? undefined : next);
    const fails = [...validate.matchAll(/\{\{-?\s*if (.*?)\s*\}\}\s*\{\{-?\s*fail "/g)].map((m) => m[1]!);
    expect(fails.some((c) => c.includes(".Values.apiTokens") && c.includes(".Values.existingSecret.name") && c.includes(".Values.server.allowInsecure"))).toBe(true);
    expect(fails.some((c) => c.includes(".Values.databaseUrl") && c.includes(".Values.existingSecret.name"))).toBe(true);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml", "secret.yaml", "migrate-job.yaml"]) {
      expect(template(name), `${name} runs the checks`).toContain('include "task-service.validate" .');
    }
    // TASK_ALLOW_INSECURE only under server.allowInsecure.
    const server = template("server-deployment.yaml");
    const at = server.indexOf("TASK_ALLOW_INSECURE");
    expect(at).toBeGreaterThan(0);
    const ifs = [...server.slice(0, at).matchAll(/\{\{-?\s*(if|else if|end)\b(.*?)\}\}/g)];
    expect(ifs.at(-1)![0]).toMatch(/if \.Values\.server\.allowInsecure/);
    expect(valueAt("server.allowInsecure").value).toBe(false);
    expect(valueAt("apiTokens").value).toEqual([]);
  });

  it("keeps secrets in a Secret: database URL, tokens and query targets", () => {
    const secret = template("secret.yaml");
    expect(secret).toMatch(/kind: Secret/);
    for (const key of ["DATABASE_URL", "TASK_API_TOKENS", "TASK_QUERY_TARGETS"]) expect(secret).toMatch(new RegExp(`^\\s+${key}:`, "m"));
    expect(secret).toMatch(/\{\{-?\s*if not \.Values\.existingSecret\.name\s*\}\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml", "migrate-job.yaml", "_helpers.tpl"]) {
      expect(template(name), `${name}: no secret in a plain value`).not.toMatch(/name: (DATABASE_URL|TASK_API_TOKENS|TASK_QUERY_TARGETS)\n\s+value:/);
    }
  });

  it("migrates in a pre-install/pre-upgrade hook Job that can read the database URL on a first install", () => {
    const job = template("migrate-job.yaml");
    expect(job).toMatch(/kind: Job/);
    expect(job).toMatch(/helm\.sh\/hook: pre-install,pre-upgrade/);
    expect(job).toMatch(/restartPolicy: Never/);
    // Hooks run before the release's Secret exists: the job's own Secret is a hook with a lower weight.
    const weights = [...job.matchAll(/helm\.sh\/hook-weight: "(-?\d+)"/g)].map((m) => Number(m[1]));
    expect(weights).toHaveLength(2);
    expect(weights[0]).toBeLessThan(weights[1]!);
  });

  it("probes the server's /readyz and /healthz and lets Prometheus scrape /metrics", () => {
    const server = template("server-deployment.yaml");
    expect(server).toMatch(/readinessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/readyz/);
    expect(server).toMatch(/livenessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/healthz/);
    expect(server).toMatch(/containerPort: \{\{ \.Values\.server\.port \}\}/);
    expect(server).toMatch(/name: TASK_PORT\s*\n\s*value: \{\{ \.Values\.server\.port \| quote \}\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml"]) {
      const text = template(name);
      expect(text, name).toContain('prometheus.io/scrape: "true"');
      expect(text, name).toContain("prometheus.io/path: /metrics");
    }
    expect(template("server-service.yaml")).toMatch(/port: \{\{ \.Values\.server\.service\.port \}\}/);
  });

  it("runs as non-root on a read-only root filesystem, with /tmp writable", () => {
    expect(valueAt("podSecurityContext.runAsNonRoot").value).toBe(true);
    expect(valueAt("podSecurityContext.runAsUser").value).toBe(1000);
    expect(valueAt("securityContext.readOnlyRootFilesystem").value).toBe(true);
    expect(valueAt("securityContext.allowPrivilegeEscalation").value).toBe(false);
    const helpers = template("_helpers.tpl");
    expect(helpers).toMatch(/- name: tmp\s*\n\s*mountPath: \/tmp/);
    expect(helpers).toMatch(/- name: tmp\s*\n\s*emptyDir: \{\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml", "migrate-job.yaml"]) {
      const text = template(name);
      expect(text, name).toContain('include "task-service.volumeMounts"');
      expect(text, name).toContain('include "task-service.volumes"');
      expect(text, name).toContain("toYaml .Values.securityContext");
      expect(text, name).toContain("toYaml .Values.podSecurityContext");
    }
  });

  it("gives workers a grace period longer than TASK_SHUTDOWN_GRACE_MS, and reachable metrics", () => {
    const worker = template("worker-deployment.yaml");
    expect(worker).toMatch(/terminationGracePeriodSeconds: \{\{ \.Values\.worker\.terminationGracePeriodSeconds \}\}/);
    expect(worker).toMatch(/name: TASK_SHUTDOWN_GRACE_MS\s*\n\s*value: \{\{ \.Values\.worker\.shutdownGraceMs \| quote \}\}/);
    expect(valueAt("worker.shutdownGraceMs").value).toBe(defaults.shutdownGraceMs);
    expect(valueAt("worker.terminationGracePeriodSeconds").value).toBe(45);
    expect((valueAt("worker.terminationGracePeriodSeconds").value as number) * 1000).toBeGreaterThan(valueAt("worker.shutdownGraceMs").value as number);
    expect(worker).toMatch(/name: TASK_METRICS_PORT\s*\n\s*value: \{\{ \.Values\.worker\.metricsPort \| quote \}\}/);
    // startMetricsServer binds TASK_HOST, loopback by default.
    expect(worker).toMatch(/name: TASK_HOST\s*\n\s*value: "0\.0\.0\.0"/);
    expect(valueAt("worker.metricsPort").value).toBe(9464);
  });

  it("sets shell and run_query targets on the server and the workers alike, shell only from enableShell", () => {
    const env = template("_helpers.tpl");
    expect(env).toMatch(/name: TASK_ENABLE_SHELL\s*\n\s*value: \{\{ \.Values\.enableShell \| toString \| quote \}\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml"]) expect(template(name), name).toContain('include "task-service.env" .');
    for (const [name, text] of templates) {
      if (name === "_helpers.tpl" || name === "NOTES.txt") continue;
      expect(text, `${name}: TASK_ENABLE_SHELL only through the shared env`).not.toContain("TASK_ENABLE_SHELL");
      expect(text, `${name}: no --enable-shell flag`).not.toContain("--enable-shell");
    }
  });
});

describe("README", () => {
  it("describes the deployment files, before Development", () => {
    const readme = read("README.md");
    const deployment = readme.indexOf("\n## Deployment\n");
    expect(deployment).toBeGreaterThan(0);
    expect(deployment).toBeLessThan(readme.indexOf("\n## Development\n"));
    const section = readme.slice(deployment, readme.indexOf("\n## ", deployment + 1));
    for (const text of ["docker-compose.yaml", "docker compose -f docker-compose.demo.yaml up --build", "helm install task charts/task-service", "Dockerfile"]) {
      expect(section).toContain(text);
    }
  });
});
