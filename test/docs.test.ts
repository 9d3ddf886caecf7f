import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(".");
const read = (file: string) => readFile(path.join(root, file), "utf8");

/** The documents a reader of the repository follows. */
const documents = ["README.md", "docs/ARCHITECTURE.md"];

describe("the repository explains itself", () => {
  it("has the design in the repository", () => {
    expect(existsSync(path.join(root, "docs/ARCHITECTURE.md"))).toBe(true);
  });

  it("links and names only files that exist in the repository", async () => {
    const missing: string[] = [];
    for (const doc of documents) {
      const text = await read(doc);
      const links = [...text.matchAll(/\]\(([^)#\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
      // Backticked repository paths such as `src/store/transitions.ts` or `migrations/`.
      const named = [...text.matchAll(/`((?:\.\.\/)*(?:src|test|scripts|migrations|docs|proto|charts|deploy|shared)\/[\w./-]*)`/g)].map((m) => m[1]!);
      for (const ref of [...links, ...named]) {
        const target = path.resolve(path.dirname(path.join(root, doc)), ref);
        const resolved = links.includes(ref) ? target : path.join(root, ref);
        if (!resolved.startsWith(root + path.sep) || !existsSync(resolved)) missing.push(`${doc}: ${ref}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("points migrations at the design in the repository, not outside it", async () => {
    for (const file of await readdir(path.join(root, "migrations"))) {
      const text = await read(`migrations/${file}`);
      expect(text, file).not.toMatch(/shared DESIGN|\.\.\/shared/);
    }
  });

  it("describes every table the migrations create", async () => {
    const architecture = await read("docs/ARCHITECTURE.md");
    const tables: string[] = [];
    for (const file of await readdir(path.join(root, "migrations"))) {
      for (const m of (await read(`migrations/${file}`)).matchAll(/create (?:unlogged )?table (\w+)/gi)) tables.push(m[1]!);
    }
    expect(tables.length).toBeGreaterThan(0);
    for (const table of tables) expect(architecture, table).toContain(`\`${table}\``);
  });
});
