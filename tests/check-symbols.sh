#!/bin/sh
# Compares the dynamic symbols that libtwin.so defines with the checked-in list, so the ABI
# changes only on purpose. Usage: check-symbols.sh LIB SYMBOLS_FILE (opencl|host)
# Lines of SYMBOLS_FILE ending in " opencl" exist only in builds with the OpenCL backend.
set -eu
lib=$1 list=$2 variant=$3
expected=$(mktemp) actual=$(mktemp)
trap 'rm -f "$expected" "$actual"' EXIT
if [ "$variant" = opencl ]; then
  sed 's/ opencl$//' "$list"
else
  grep -v ' opencl$' "$list"
fi | grep -v '^#' | sort > "$expected"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort > "$actual"
if ! diff -u "$expected" "$actual"; then
  echo "libtwin exports differ from $list (- expected, + exported)" >&2
  exit 1
fi
echo "ok: $(wc -l < "$actual") exported symbols match $list"
