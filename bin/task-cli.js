#!/usr/bin/env node
// Runs the compiled build (dist/, `npm run build`) when it is there and built from the current sources,
// with plain node; otherwise the TypeScript sources through tsx (a devDependency), so a fresh clone
// needs only `npm install`. The image has dist/ and no src/, so it always runs the build.
import { existsSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = new URL("../", import.meta.url);
const built = new URL("dist/cli/main.js", root);
const sources = fileURLToPath(new URL("src/", root));

/** Newest modification time under a directory (a few hundred stat calls: a few milliseconds). */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
  }
  return latest;
}

// Hazard: judged by modification times, so a source file copied in with an old mtime (cp -p, tar)
// after a build is not noticed; `npm run build` again, or delete dist/.
const useBuild = existsSync(built) && (!existsSync(sources) || statSync(built).mtimeMs > newest(sources));

let main;
if (useBuild) {
  ({ main } = await import(built.href));
} else {
  const tsx = await import("tsx/esm/api").catch(() => {
    console.error("error: dist/ is missing or older than src/, and tsx is not installed: run `npm install` (development) or `npm run build`");
    process.exit(1);
  });
  tsx.register();
  ({ main } = await import("../src/cli/main.ts"));
}
await main(process.argv);
