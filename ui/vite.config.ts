import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

/**
 * The dashboard imports the API's generated client from ../src/gen (relative imports ending in .js,
 * which Vite resolves to the .ts sources), so the browser and the server share one contract; and the
 * few plain modules of ../src that hold a rule both apply (listed in tsconfig.json's include: no
 * Node imports there), so the rule has one owner.
 */
export default defineConfig({
  root,
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The budget check (scripts/check-ui-budget.ts) measures these; source maps are not shipped.
    sourcemap: false,
  },
  server: {
    // Allow the dev server to read the generated client outside ui/.
    fs: { allow: [fileURLToPath(new URL("..", import.meta.url))] },
    // `npm run dev:ui`: the page on Vite's port, the API on a running server's.
    proxy: { "/task.v1.TaskService": process.env.TASK_API_URL ?? "http://127.0.0.1:8080" },
  },
});
