#!/bin/sh
# npm runs this after `npm install` in a checkout: it compiles the server and the SDK entry to dist/
# (so task-cli starts without tsx, and dist/sdk/index.js + .d.ts are the package's public entry, see
# package.json "exports"), installs the examples (each a package depending on this one by path,
# `file:../..`: npm links it, so it needs dist/ built first) and builds the dashboard. In a production
# install (`--omit=dev`) the compilers are not there: say so and go on, since the image's build stage
# has already done both.
set -e
# The examples' installs below link this package, and npm may run its prepare from there: once is enough.
if [ -n "$TASK_SERVICE_PREPARING" ]; then exit 0; fi
export TASK_SERVICE_PREPARING=1
if [ -d node_modules/@typescript/native-preview ]; then
  npm run build
  # The examples' tests run in `npm test`; their install sees TASK_SERVICE_PREPARING and does not
  # come back here.
  for example in examples/*/; do
    if [ -f "$example/package.json" ]; then (cd "$example" && npm install --no-audit --no-fund); fi
  done
else
  echo "prepare: server not compiled (no dev dependencies): run npm run build"
fi
if [ -f ui/index.html ] && [ -d node_modules/vite ]; then npm run build:ui; else echo "prepare: dashboard not built (no ui/ or no dev dependencies here): run npm run build:ui"; fi
