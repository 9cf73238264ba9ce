#!/usr/bin/env bash
# Regenerates inputs/pinpoint/pb from inputs/pinpoint/proto/v1/*.proto.
#
# The protoc plugins are built from the versions pinned in go.mod (its `tool`
# directive), never from whatever happens to be on PATH, so every developer
# and CI produce byte-identical output for the same protoc. The output names
# only repository-relative paths, so it does not depend on where the tree is
# checked out. protoc's own version appears in the file headers: CI and the
# developers use Debian's protobuf-compiler (3.21), so it matches too.
#
# Usage: bash inputs/pinpoint/proto/gen.sh   (from anywhere; `make proto`)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"

module=$(go list -m)
proto_dir=inputs/pinpoint/proto
out_dir=inputs/pinpoint/pb

if ! command -v protoc >/dev/null 2>&1; then
	echo "gen.sh: protoc not found; install it (Debian: apt-get install protobuf-compiler)" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# `go build` inside the module resolves these packages to the versions that
# go.mod requires, which is what pins the generators.
for pkg in google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc; do
	go build -o "$tmp/$(basename "$pkg")" "$pkg"
done
echo "gen.sh: $(protoc --version), protoc-gen-go $(go list -m -f '{{.Version}}' google.golang.org/protobuf)," \
	"protoc-gen-go-grpc $(go list -m -f '{{.Version}}' google.golang.org/grpc/cmd/protoc-gen-go-grpc)" >&2

# google/protobuf/{wrappers,empty}.proto ship with protoc; Debian puts them in
# /usr/include. protoc also finds them next to its binary on most installs,
# so an explicit -I is only added when that directory exists.
includes=(-I "$proto_dir")
for dir in ${PROTOC_INCLUDE:-} /usr/include /usr/local/include; do
	if [ -f "$dir/google/protobuf/empty.proto" ]; then
		includes+=(-I "$dir")
		break
	fi
done

# Remove old output first so a deleted .proto does not leave a stale file.
rm -f "$out_dir"/*.pb.go

# Sorted file list: the order protoc sees the files in must not depend on the
# file system.
mapfile -t protos < <(cd "$proto_dir" && find v1 -name '*.proto' | LC_ALL=C sort)

protoc "${includes[@]}" \
	--plugin=protoc-gen-go="$tmp/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$tmp/protoc-gen-go-grpc" \
	--go_out=. --go_opt=module="$module" \
	--go-grpc_out=. --go-grpc_opt=module="$module" \
	"${protos[@]}"

echo "gen.sh: wrote $(ls "$out_dir"/*.pb.go | wc -l) files to $out_dir" >&2
