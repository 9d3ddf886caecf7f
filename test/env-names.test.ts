import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { clientEnvNames, configEnvNames } from "../src/config.js";

/**
 * src/config.ts is the one reader of the environment and names every variable once, beside its
 * schema. This reads the source tree the way a reviewer would grep it.
 */
const SRC = path.resolve(import.meta.dirname, "../src");
const CONFIG = path.join(SRC, "config.ts");

/** What looks like one of our variables. */
const ENV_NAME = /\b(?:TASK_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL|SMTP_[A-Z0-9_]*[A-Z0-9]|LOG_LEVEL|OTEL_[A-Z0-9_]*[A-Z0-9])\b/g;

/**
 * Names that look like ours but are no setting: the proto's TaskStatus values (TASK_STATUS_*), a
 * constant's name, and the variables the shell plugin gives the commands it runs (never read here).
 */
const NOT_SETTINGS = /^(?:TASK_STATUS_\w*|TASK_EVENTS_CHANNEL|TASK_ID|TASK_ATTEMPT|TASK_INPUT_DIR|TASK_OUTPUT_DIR|TASK_PROGRESS)$/;

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (full !== path.join(SRC, "gen")) out.push(...(await sourceFiles(full)));
    } else if (/\.tsx?$/.test(entry.name)) out.push(full);
  }
  return out;
}

describe("environment variables", () => {
  const defined = new Set<string>([...Object.values(configEnvNames), ...Object.values(clientEnvNames)]);

  it("are read by src/config.ts alone, and every one mentioned elsewhere is one it defines", async () => {
    const problems: string[] = [];
    for (const file of await sourceFiles(SRC)) {
      if (file === CONFIG) continue;
      const text = await readFile(file, "utf8");
      const where = path.relative(SRC, file);
      if (text.includes("process.env")) problems.push(`${where}: reads process.env (take a Config or an env object instead)`);
      for (const [name] of text.matchAll(ENV_NAME)) {
        if (!defined.has(name) && !NOT_SETTINGS.test(name)) problems.push(`${where}: ${name} is not defined in src/config.ts`);
      }
      // A name as a bare string is a second definition: use the one config exports.
      for (const [, name] of text.matchAll(/["'`]([A-Z][A-Z0-9_]+)["'`]/g)) {
        if (defined.has(name!)) problems.push(`${where}: "${name}" typed again (import it from src/config.ts)`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("are each defined once", () => {
    const names = [...Object.values(configEnvNames), ...Object.values(clientEnvNames)];
    expect(names.length).toBe(defined.size);
  });
});
