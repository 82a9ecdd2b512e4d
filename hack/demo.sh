#!/usr/bin/env bash
# make demo: build the guest image and run a container in its own VM.
set -euo pipefail
cd "$(dirname "$0")/.."
vc=./bin/vc
echo "== host check"
$vc check || true
echo
echo "== guest image (first time: builds the minimal guest kernel from Debian's linux-source, a few minutes)"
$vc image build
echo
echo "== host kernel: $(uname -r)"
echo "== vc run --rm busybox -- uname -r   (the guest's kernel)"
time $vc run --rm busybox -- uname -r
echo
echo "== vc run --rm busybox -- sh -c 'grep -m1 \"model name\" /proc/cpuinfo; free -m'"
$vc run --rm busybox -- sh -c 'grep -m1 "model name" /proc/cpuinfo; free -m'
