#!/usr/bin/env bash
# Installs twin into a temporary prefix and builds the examples outside the tree against it
# with `pkg-config --cflags --libs twin`, then runs them on the host backend and the default
# device. This is what a user's program sees.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d /tmp/twin-prefix.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
meson setup "$prefix/build" --prefix="$prefix/usr" -Dtests=false -Dexamples=false >/dev/null
meson install -C "$prefix/build" >/dev/null
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$(find "$prefix/usr" -name twin.pc)")
echo "pkg-config --cflags --libs twin: $(pkg-config --cflags --libs twin)"
for src in examples/*.c; do
  exe="$prefix/$(basename "$src" .c)"
  # shellcheck disable=SC2046
  cc -std=c11 -Wall -Werror -o "$exe" "$src" $(pkg-config --cflags --libs twin)
  libdir=$(pkg-config --variable=libdir twin)
  for dev in host ""; do
    LD_LIBRARY_PATH="$libdir" TWIN_DEVICE="$dev" "$exe" >/dev/null
  done
  echo "installed-copy build ok: $src"
done
