#!/usr/bin/env -S node --max-semi-space-size=2
// --max-semi-space-size=2: V8's young generation grows to 16 MB per semi-space under a high allocation
// rate (a draining worker), most of which stays resident; 2 MB keeps a draining `serve -n 10` near its
// idle size at no throughput cost measured (docs/design/hot-path.md). npm start, the image's entrypoint and
// the bench pass the flags of this line (scripts/bench/processes.ts reads them from here).
// Runs the compiled build (dist/, `npm run build`) when it is there and built from the current sources,
// with plain node; otherwise the TypeScript sources through tsx (a devDependency), so a fresh clone
// needs only `npm install`. The image has dist/ and no src/, so it always runs the build.
import { builtEntry, compiledBuildIsFresh } from "./freshness.js";

let main;
if (compiledBuildIsFresh()) {
  ({ main } = await import(builtEntry.href));
} else {
  const tsx = await import("tsx/esm/api").catch(() => {
    console.error("error: dist/ is missing or older than src/, and tsx is not installed: run `npm install` (development) or `npm run build`");
    process.exit(1);
  });
  tsx.register();
  ({ main } = await import("../src/cli/main.ts"));
}
await main(process.argv);
