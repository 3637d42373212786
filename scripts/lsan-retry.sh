#!/usr/bin/env bash
# Runs a test command (meson test --wrapper) and runs it again, at most twice more, when it
# failed only because LeakSanitizer's own stop-the-world tracer crashed at exit ("Tracer
# caught signal 11 ... LeakSanitizer has encountered a fatal error"): a known fault of the
# checker (google/sanitizers#1353). The crash seen here, a stale dynamic-TLS record, is avoided
# by intercept_tls_get_addr=0 (tests/meson.build); this is the net for any other. Nothing else
# is retried:
# a leak report, a sanitizer finding or a failed assertion fails the test on the first run.
set -u
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for attempt in 1 2 3; do
  "$@" 2> >(tee "$log" >&2)
  status=$?
  wait # for tee to finish writing the log
  if [ "$status" -eq 0 ] || ! grep -q "Tracer caught signal" "$log" ||
    ! grep -q "LeakSanitizer has encountered a fatal error" "$log" ||
    grep -q "ERROR: LeakSanitizer: detected memory leaks\|ERROR: AddressSanitizer\|runtime error:" "$log"; then
    exit "$status"
  fi
  echo "lsan-retry: LeakSanitizer's tracer crashed (run $attempt; not a finding): running again" >&2
done
exit "$status"
