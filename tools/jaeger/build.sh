#!/usr/bin/env bash
# Builds Jaeger all-in-one (the `tool` of this module) once per go.sum: the binary is kept
# in a cache folder named by go.sum's hash, so a fresh clone on the same machine (CI runs
# in one) copies it instead of compiling Jaeger again; bin/jaeger is that copy. A changed
# go.sum (another Jaeger version) gets a new cache entry and a rebuild.
# Usage: tools/jaeger/build.sh OUT  (OUT: where the binary goes, e.g. bin/jaeger)
set -euo pipefail
out=$(realpath -m "${1:?usage: build.sh OUT}")
cd "$(dirname "$0")"
GO=${GO:-go}
sum=$(sha256sum go.sum | cut -c1-16)
cache=${APMKIT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apmkit-tools}
cached="$cache/jaeger-$sum"
if [ ! -x "$cached" ]; then
  mkdir -p "$cache"
  echo "building Jaeger (once per tools/jaeger/go.sum) into $cached"
  CGO_ENABLED=0 $GO build -trimpath -o "$cached.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
  mv "$cached.tmp" "$cached"
fi
mkdir -p "$(dirname "$out")"
if ! cmp -s "$cached" "$out"; then
  cp "$cached" "$out.tmp" && mv "$out.tmp" "$out"
fi
touch "$out" # newer than go.sum: make has nothing to do until go.sum changes
