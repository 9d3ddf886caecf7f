/**
 * `npm run build` and bin/task-cli.js: the compiled dist/ runs with plain node (no tsx) when it is built
 * from the current sources; otherwise the sources run through tsx. Checked in a copy of the package
 * whose node_modules lacks tsx, as an `npm install --omit=dev` has it.
 */
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { root } from "../helpers/deployment.js";

const execFileAsync = promisify(execFile);

async function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [file, ...args], { env: { ...process.env, CI: "true" } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("the compiled build", () => {
  let dir = "";
  let bin = "";
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "task-build-"));
    for (const name of ["bin", "src", "migrations", "package.json", "tsconfig.json", "tsconfig.build.json"]) cpSync(path.join(root, name), path.join(dir, name), { recursive: true });
    // node_modules without tsx: every other package, linked.
    mkdirSync(path.join(dir, "node_modules"));
    for (const name of readdirSync(path.join(root, "node_modules"))) {
      if (name !== "tsx" && name !== ".bin") symlinkSync(path.join(root, "node_modules", name), path.join(dir, "node_modules", name));
    }
    await execFileAsync(path.join(root, "node_modules", ".bin", "tsgo"), ["-p", path.join(dir, "tsconfig.build.json")], { cwd: dir });
    bin = path.join(dir, "bin", "task-cli.js");
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("emits src/ (no tests) to dist/", () => {
    expect(existsSync(path.join(dir, "dist", "cli", "main.js"))).toBe(true);
    expect(existsSync(path.join(dir, "dist", "store", "migrate.js"))).toBe(true);
    const emitted = readdirSync(path.join(dir, "dist"), { recursive: true }).map(String);
    expect(emitted.filter((f) => f.includes(".test."))).toEqual([]);
    // Declarations only (the package's types, package.json "exports"): no TypeScript source.
    expect(emitted.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    expect(existsSync(path.join(dir, "dist", "sdk", "index.d.ts"))).toBe(true);
  });

  it("runs dist/ with plain node when it is newer than src/", async () => {
    const result = await run(bin, ["task", "--help"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Usage: task-cli task");
  });

  it("finds the migrations from dist/", async () => {
    const { migrationsDir } = (await import(path.join(dir, "dist", "store", "migrate.js"))) as { migrationsDir: string };
    expect(migrationsDir).toBe(path.join(dir, "migrations") + path.sep);
  });

  it("falls back to the sources when one is newer than dist/, and says what to do without tsx", async () => {
    const future = new Date(Date.now() + 60_000);
    utimesSync(path.join(dir, "src", "config.ts"), future, future);
    const result = await run(bin, ["task", "--help"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("dist/ is missing or older than src/, and tsx is not installed");
  });
});
