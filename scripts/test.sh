#!/usr/bin/env bash
# The whole test suite: every test on every backend (PoCL through the ICD loader, the host
# backend and the fake test device), then libtwin-mpi's tests under mpirun on 1, 2 and 4 ranks,
# then everything again under AddressSanitizer + UndefinedBehaviorSanitizer with leak
# detection, then under ThreadSanitizer, then built without OpenCL and without the examples,
# then every build a user may choose compiled once (the build matrix: each buildtype, gcc and
# clang, each option; compile-only, -Werror), then a program built outside the tree against an
# installed copy through pkg-config; last, a minute of fuzzing.
# Ends with one line: N passed, N failed[, N skipped].
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1
jobs=$(nproc)

build() { # build DIR [meson options...]
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" || return 1
  elif [ $# -gt 0 ]; then
    meson configure "$dir" "$@" || return 1 # an older directory gets this run's options
  fi
  meson compile -C "$dir" || return 1
}

# The plain run goes first so the PoCL kernel cache is warm for the sanitizer run. It builds
# libtwin-mpi too (-Dmpi=enabled: Open MPI is a dependency); its tests run in the MPI stage.
if build build -Dmpi=enabled; then
  meson test -C build --print-errorlogs --num-processes "$jobs" --no-suite mpi
fi

# MPI: libtwin-mpi's tests and the heat example under mpirun --allow-run-as-root
# --oversubscribe on 1, 2 and 4 ranks of this machine, each rank with its own context (about a
# minute). Its log: build/meson-logs/mpi.json.
if [ -f build/build.ninja ]; then
  meson test -C build --print-errorlogs --num-processes "$jobs" --suite mpi --logbase mpi
fi

# UBSan does not fail by default: -fno-sanitize-recover makes any finding fatal. Built with
# clang: GCC 12's LeakSanitizer crashed in its own tracer at exit ("Tracer caught signal 11")
# in about one run in five of the OpenCL kernel tests, a fault of the checker, not a finding;
# clang 14's far less often. (A directory configured with another compiler is set up anew.)
if [ -f build-asan/build.ninja ] && ! grep -A1 "^rule c_COMPILER$" build-asan/build.ninja | grep -q clang; then
  rm -rf build-asan
fi
if CC=clang build build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=undefined -Dc_link_args=-fno-sanitize-recover=undefined; then
  # Should LeakSanitizer's tracer itself crash at exit (a fault of the checker, not a finding),
  # lsan-retry.sh reruns that test; it retries nothing else.
  meson test -C build-asan --print-errorlogs --num-processes "$jobs" \
    --wrapper "$PWD/scripts/lsan-retry.sh" # its log: meson-logs/testlog-lsan-retry.sh.json
fi

# ThreadSanitizer: the threaded tests (views of one buffer shared across threads, concurrent
# copies, refcounts) must be race-free. No suppressions: PoCL runs clean under TSan.
if build build-tsan -Db_sanitize=thread -Db_lundef=false; then
  meson test -C build-tsan --print-errorlogs --num-processes "$jobs"
fi

# Without OpenCL (-Dopencl=disabled): the host backend and the fake test device must build and
# pass the whole suite, coherence included. Configured without the examples (-Dexamples=false),
# so that option keeps working; the plain run tests the examples on every backend.
if build build-host-only -Dopencl=disabled -Dexamples=false; then
  meson test -C build-host-only --print-errorlogs --num-processes "$jobs"
fi

# The build matrix, compile-only (scripts/build-matrix.sh): gcc at each buildtype, clang at debug
# and release, and builds with -Dexamples=false, -Dtests=false, -Dopencl=disabled -Dmpi=disabled
# and -Dfuzz=true, all with -Werror. Its directories build-matrix/NAME are kept and compiles go
# through ccache, so a later run compiles only what changed. One entry per configuration in
# build-matrix/matrix.json.
scripts/build-matrix.sh

install_result=0/1
if scripts/check-install.sh; then
  install_result=1/0
fi

# libFuzzer on the host backend for about a minute (scripts/fuzz.sh, clang + ASan + UBSan): an
# input that crashes, trips a sanitizer or disagrees with the plain-C model fails the run. Its
# last line ("fuzz: N executions in 60 s, N findings") stays in this run's output.
fuzz_result=0/1
if scripts/fuzz.sh 60; then
  fuzz_result=1/0
fi

python3 scripts/summary.py build build/meson-logs/mpi.json \
  build-asan/meson-logs/testlog-lsan-retry.sh.json build-tsan build-host-only \
  build-matrix/matrix.json \
  "install=$install_result" \
  "fuzz=$fuzz_result"
