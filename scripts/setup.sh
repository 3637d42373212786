#!/usr/bin/env bash
# Quick start: installs the dependencies, builds twin into build/, lists the devices with a
# self-test on each, and runs the showcase example on the default device.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d build ] || meson setup build
meson compile -C build
build/tools/twin-info --selftest
build/examples/hello
