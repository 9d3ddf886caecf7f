import { readFileSync } from "node:fs";

/**
 * The node flags bin/task-cli.js's `#!` line runs it with, the one place they are written: npm start,
 * the image's entrypoint and the bench pass the same (test/deployment/image.test.ts checks the first two).
 */
export function cliNodeFlags() {
  const shebang = readFileSync(new URL("./task-cli.js", import.meta.url), "utf8").split("\n", 1)[0];
  const match = /^#!\/usr\/bin\/env -S node\b(.*)$/.exec(shebang);
  if (!match) throw new Error(`bin/task-cli.js: unexpected first line ${JSON.stringify(shebang)}`);
  return match[1].trim().split(/\s+/).filter(Boolean);
}
