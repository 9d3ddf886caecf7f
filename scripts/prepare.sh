#!/bin/sh
# npm runs this after `npm install` in a checkout: it compiles the server to dist/ (so task-cli starts
# without tsx) and builds the dashboard. In a production install (`--omit=dev`) the compilers are not
# there: say so and go on, since the image's build stage has already done both.
set -e
if [ -d node_modules/@typescript/native-preview ]; then npm run build; else echo "prepare: server not compiled (no dev dependencies): run npm run build"; fi
if [ -f ui/index.html ] && [ -d node_modules/vite ]; then npm run build:ui; else echo "prepare: dashboard not built (no ui/ or no dev dependencies here): run npm run build:ui"; fi
