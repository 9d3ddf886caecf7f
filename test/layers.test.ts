import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Imports run down the layers, never back up: the store (SQL) knows nothing of the worker runtime,
 * the server, the CLI or the scheduler that use it; the worker runtime knows nothing of the server
 * or the CLI. (docs/ARCHITECTURE.md, "What each part owns".)
 */
const FORBIDDEN: Record<string, string[]> = {
  store: ["worker", "api", "cli", "schedules", "sdk"],
  worker: ["api", "cli", "sdk"],
  plugins: ["worker", "api", "cli", "schedules", "sdk"],
};

/** The src/ layers a file's relative imports reach, as `layer` names. */
function importedLayers(file: string, text: string): string[] {
  const src = path.resolve("src");
  return [...text.matchAll(/from\s+"(\.{1,2}\/[^"]+)"/g)]
    .map((m) => path.relative(src, path.resolve(path.dirname(file), m[1]!)).split(path.sep)[0]!)
    .filter((layer) => !layer.startsWith(".."));
}

function upwardImports(layer: string): string[] {
  const dir = path.resolve("src", layer);
  const found: string[] = [];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    if (!name.endsWith(".ts")) continue;
    const file = path.join(dir, name);
    for (const to of importedLayers(file, readFileSync(file, "utf8"))) {
      if (FORBIDDEN[layer]!.includes(to)) found.push(`src/${layer}/${name} imports src/${to}`);
    }
  }
  return found;
}

describe("layers", () => {
  it("the check sees an upward import", () => {
    expect(importedLayers(path.resolve("src/store/x.ts"), 'import { a } from "../worker/claim-loop.js";')).toEqual(["worker"]);
  });

  it.each(Object.keys(FORBIDDEN))("src/%s imports nothing from the layers above it", (layer) => {
    expect(upwardImports(layer)).toEqual([]);
  });
});
