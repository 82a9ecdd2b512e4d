#!/usr/bin/env bash
# Fails when the committed generated code differs from what `make generate`
# produces.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -a api/agent "$tmp/before"
./hack/generate.sh
if ! diff -r "$tmp/before" api/agent >"$tmp/diff"; then
	cp -a "$tmp/before/." api/agent/
	echo "generated code in api/agent is stale; run 'make generate' and commit:" >&2
	head -40 "$tmp/diff" >&2
	exit 1
fi
echo "generated code is up to date"
