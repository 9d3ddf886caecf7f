// Fails the UI build when the dashboard's JavaScript, gzipped, is over budget: the page must load
// fast on a phone. Run by `npm run build:ui` after vite build.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const BUDGET_BYTES = 250 * 1024;
const assets = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../ui/dist/assets");

const files = readdirSync(assets).filter((f) => f.endsWith(".js"));
let total = 0;
for (const f of files) {
  const gz = gzipSync(readFileSync(path.join(assets, f)), { level: 9 }).length;
  total += gz;
  console.log(`  ${f}: ${(gz / 1024).toFixed(1)} KiB gzipped`);
}
const line = `dashboard JavaScript: ${(total / 1024).toFixed(1)} KiB gzipped (budget ${BUDGET_BYTES / 1024} KiB)`;
if (files.length === 0 || total > BUDGET_BYTES) {
  console.error(files.length === 0 ? "no JavaScript found in ui/dist/assets" : `over budget: ${line}`);
  process.exit(1);
}
console.log(line);
