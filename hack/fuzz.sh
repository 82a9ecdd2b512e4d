#!/usr/bin/env bash
# Runs every Go fuzz target of the module (the packages whose tests hold a
# func Fuzz..., their targets listed by go test -list) for FUZZTIME each
# (default 20s), and stops at the first failure; the failing input is in
# the package's testdata/fuzz/<target>/, a regression seed once committed.
# FUZZMINIMIZETIME (default 5s) bounds the minimization of each new input:
# go's default, a minute, would take a 20s run's whole time.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
start=$(date +%s)
n=0
pkgs=$(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | xargs -n1 dirname | sort -u)
for pkg in $pkgs; do
	list=$($GO test -list '^Fuzz' "$pkg")
	for target in $(grep '^Fuzz' <<<"$list"); do
		echo "== $pkg $target ($FUZZTIME)"
		if ! $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg"; then
			echo "hack/fuzz.sh: $target in $pkg failed (the input is in $pkg/testdata/fuzz/$target/)" >&2
			exit 1
		fi
		n=$((n + 1))
	done
done
echo "hack/fuzz.sh: $n fuzz targets passed in $(($(date +%s) - start))s"
