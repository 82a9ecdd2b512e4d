#!/usr/bin/env bash
# Regenerates api/agent/*.pb.go from the .proto files with pinned plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" google.golang.org/protobuf/cmd/protoc-gen-go github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc
cd api/agent
PATH="$bin:$PATH" protoc -I. -I/usr/include \
	--go_out=. --go_opt=paths=source_relative \
	--go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative \
	agent.proto health.proto oci.proto csi.proto types.proto portforward.proto trace.proto
