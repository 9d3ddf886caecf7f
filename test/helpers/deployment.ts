/** Shared by the deployment consistency tests (test/deployment/*.test.ts): the repository's files and what the code says is valid. */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { parseDocument } from "yaml";
import { buildProgram } from "../../src/cli/program.js";
import { configEnvNames, loadConfig } from "../../src/config.js";

export const root = fileURLToPath(new URL("../..", import.meta.url));
export const read = (file: string) => readFileSync(path.join(root, file), "utf8");
export const exists = (file: string) => existsSync(path.join(root, file));

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Parses one YAML file strictly (no errors or warnings, no duplicate keys), with `<<` merge keys as Compose reads them. */
export function parseYaml(file: string): JsonObject {
  const doc = parseDocument(read(file), { merge: true, uniqueKeys: true, prettyErrors: true });
  expect(doc.errors.map(String), `${file}: YAML errors`).toEqual([]);
  expect(doc.warnings.map(String), `${file}: YAML warnings`).toEqual([]);
  const value = doc.toJS() as Json;
  expect(value, `${file}: top level is a mapping`).toBeTypeOf("object");
  return value as JsonObject;
}

export const isObject = (v: Json | undefined): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** The environment variables the service reads (src/config.ts), and those the CLI's own flags read (TASK_ADDRESS, TASK_TOKEN, ...). */
export const configVariables = new Set(Object.values(configEnvNames));
export const cliVariables = new Set<string>();
{
  const program = buildProgram({ stdout: { write: () => true }, stderr: { write: () => true }, isTTY: false });
  const walk = (cmd: typeof program) => {
    for (const option of cmd.options) if (option.envVar) cliVariables.add(option.envVar);
    cmd.commands.forEach(walk);
  };
  walk(program);
}
/** What looks like one of ours: a name anything here could mistype. */
export const ENV_NAME = /\b(?:TASK_[A-Z0-9_]+|DATABASE_URL|SMTP_[A-Z0-9_]+|LOG_LEVEL)\b/g;

/** The configuration's defaults, as a process with an empty environment gets them. */
export const defaults = loadConfig({}, {});

export interface ParsedCommand {
  command: string;
  opts: Record<string, unknown>;
}

/**
 * Parses argv (without `task-cli`) with the real program, its actions replaced so nothing runs: an
 * unknown command or flag, a missing flag value or an extra argument throws as the CLI would refuse it.
 */
export function parseCli(args: string[]): ParsedCommand {
  let stderr = "";
  const program = buildProgram({ stdout: { write: () => true }, stderr: { write: (s: string) => (stderr += s) }, isTTY: false });
  let parsed: ParsedCommand | undefined;
  // Every command that runs something (the leaves: `server`, `task create`, ...); never its real action.
  const replace = (parent: typeof program) => {
    for (const cmd of parent.commands) {
      if (cmd.commands.length > 0) replace(cmd);
      else
        cmd.action((...args: unknown[]) => {
          parsed = { command: cmd.name(), opts: cmd.opts() };
          void args;
        });
    }
  };
  replace(program);
  try {
    program.parse(["node", "task-cli", ...args]);
  } catch (err) {
    throw new Error(`task-cli ${args.join(" ")}: ${stderr.trim() || String(err)}`);
  }
  if (!parsed) throw new Error(`task-cli ${args.join(" ")}: ran no command`);
  return parsed;
}

export const serviceCommands = new Set(["server", "serve", "migrate", "up"]);
