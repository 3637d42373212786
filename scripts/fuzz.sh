#!/usr/bin/env bash
# Fuzzes twin's calls on the host backend with libFuzzer (tests/fuzz/fuzz_calls.c) for SECONDS
# (default 60): builds build-fuzz with clang, ASan and UBSan, replays every committed input of
# tests/fuzz/corpus once, then fuzzes from a copy of it (build-fuzz/corpus) and stops at the
# first finding, which it saves to build-fuzz/findings/ (reproduce: build-fuzz/tests/fuzz/fuzz_calls
# FILE; TWIN_FUZZ_TRACE=1 also prints the calls an input makes).
#   scripts/fuzz.sh [SECONDS] [--keep-going]
# --keep-going fuzzes in a child process (libFuzzer's -fork) and goes on past findings, saving
# each, for long runs. Ends with one line: "fuzz: N executions in S s, N findings"; exits 1 if
# any input failed.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
keep_going=0
[ "${2:-}" = "--keep-going" ] && keep_going=1
dir=build-fuzz

if [ ! -f "$dir/build.ninja" ]; then
  CC=clang meson setup "$dir" -Dfuzz=true -Dopencl=disabled -Dexamples=false \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=undefined -Dc_link_args=-fno-sanitize-recover=undefined ||
    { echo "fuzz: 0 executions in 0 s, 1 findings (the fuzz build could not be configured)"; exit 1; }
fi
meson compile -C "$dir" ||
  { echo "fuzz: 0 executions in 0 s, 1 findings (the fuzz target did not build)"; exit 1; }

target=$dir/tests/fuzz/fuzz_calls
mkdir -p "$dir/corpus" "$dir/findings"
cp -n tests/fuzz/corpus/* "$dir/corpus/"
log=$dir/fuzz.log
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
findings=0

# The committed inputs first: seeds and the regressions of earlier findings.
if ! "$target" -runs=0 tests/fuzz/corpus >"$log" 2>&1; then
  grep -E "^finding:|runtime error|ERROR: |^Running:" "$log" | tail -5
  findings=1
fi

if [ "$keep_going" = 1 ]; then
  "$target" -fork=1 -ignore_crashes=1 -max_total_time="$seconds" -timeout=10 \
    -artifact_prefix="$dir/findings/" "$dir/corpus" >>"$log" 2>&1
  runs=$(grep -oE "^#[0-9]+" "$log" | tail -1 | tr -d '#')
  findings=$((findings + $(grep -c "ERROR: libFuzzer\|runtime error\|^finding:" "$log")))
else
  before=$(ls "$dir/findings" | wc -l)
  "$target" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$dir/findings/" "$dir/corpus" >>"$log" 2>&1
  runs=$(grep -oE "stat::number_of_executed_units: [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+$")
  new=$(( $(ls "$dir/findings" | wc -l) - before ))
  findings=$((findings + new))
  if [ "$new" -gt 0 ]; then
    grep -E "^finding:|runtime error|^SUMMARY" "$log" | tail -3
    echo "saved: $(ls -t "$dir/findings" | head -1 | sed "s|^|$dir/findings/|")"
  fi
fi
echo "fuzz: ${runs:-0} executions in $seconds s, $findings findings (log: $log)"
[ "$findings" -eq 0 ]
