#!/bin/sh
# What the tests need beyond npm packages, from Debian: Chromium for the dashboard's browser tests,
# unzip for scripts/k8s-tools.sh (helm and kubectl), docker-compose 1.29 for the compose `config`
# check, Prometheus for test/prometheus.test.ts (PromQL over the service's metrics), shellcheck for the
# create-time check of shell commands (test/shell-check.test.ts). `npm test` runs
# this first (pretest) and so does .ci/run: as root with apt-get it installs what is missing;
# otherwise it says what to install and goes on (those tests then say so too).
missing=""
command -v chromium >/dev/null 2>&1 || [ -n "$CHROMIUM_PATH" ] || missing="$missing chromium"
command -v unzip >/dev/null 2>&1 || missing="$missing unzip"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
[ -x /usr/bin/prometheus ] || missing="$missing prometheus"
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-prereqs: installing$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "test-prereqs: missing$missing (apt-get install -y$missing); the tests that need them will fail or skip" >&2
fi
