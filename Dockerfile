# The task service: one image for every role, chosen by the command (see the README's task-cli table):
#   server --host 0.0.0.0   the API (needs TASK_API_TOKENS, or TASK_ALLOW_INSECURE=true)
#   serve -n 10             a worker process with 10 slots
#   migrate                 apply the migrations and exit
# Every role needs DATABASE_URL. Without it, `server`, `up` and `migrate` would start an embedded
# PostgreSQL inside the container, which is meant for a laptop, not for a deployment.
#
# There is no build step: bin/task-cli.js runs the TypeScript sources through tsx, which is a runtime
# dependency, so `npm install --omit=dev` is the whole install.
FROM node:20-bookworm-slim

# TASK_DATA_DIR: the email outbox (send_email without SMTP_URL) and, for `up`, the embedded database
# live there: a writable directory outside the application files, which the service user cannot change.
ENV NODE_ENV=production \
    TASK_DATA_DIR=/data

WORKDIR /app

# tini as PID 1: it forwards signals and reaps the orphans that shell tasks can leave behind
# (node as PID 1 would let them pile up as zombies).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && mkdir -p /data \
 && chown node:node /data

# tsx also reads tsconfig.json, so the sources run with the compiler options they are checked with.
COPY tsconfig.json ./
COPY bin/ ./bin/
COPY migrations/ ./migrations/
COPY src/ ./src/

# The image's `node` user, given by number so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

EXPOSE 8080

# Right for `server`, which answers /healthz as soon as it listens. docker-compose.demo.yaml replaces it
# for the workers, which have no API (their /metrics is on TASK_METRICS_PORT), and turns it off for
# `migrate`. Kubernetes ignores it and uses the chart's probes.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.TASK_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["tini", "--", "node", "bin/task-cli.js"]
CMD ["server"]
