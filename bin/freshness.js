// Whether the compiled build (dist/, `npm run build`) is there and newer than every source file:
// bin/task-cli.js runs it with plain node only then, and `npm run bench` builds first when it is not.
import { existsSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = new URL("../", import.meta.url);
/** The compiled CLI entry point. */
export const builtEntry = new URL("dist/cli/main.js", root);
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
/** True when dist/ exists and is newer than src/ (or there is no src/, as in the image). */
export function compiledBuildIsFresh() {
  return existsSync(builtEntry) && (!existsSync(sources) || statSync(builtEntry).mtimeMs > newest(sources));
}
