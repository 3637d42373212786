#!/usr/bin/env bash
# The build matrix: every build a user may choose must compile, with -Werror on the project's
# own warning set (meson's -Dwerror=true; headers from system directories, and MPI's, which
# mpi/meson.build includes as system headers, are not ours to keep clean). Compile-only: no
# test runs. Each buildtype with gcc, clang at debug and release, each option switched away
# from its default once with everything else built (-Dmpi=enabled unless the configuration
# says otherwise, so a missing MPI fails loudly; -Dmpi=disabled rides with -Dopencl=disabled,
# -Dmpi=auto with -Dfuzz=true). The option builds use buildtype plain, the cheapest to
# compile, and share ccache entries with gcc-plain.
#   scripts/build-matrix.sh [NAME...]    (default: every configuration below)
# Build directories are kept (build-matrix/NAME) and reused while a configuration's compiler
# and options stay the same, so a second run compiles only what changed. Compiles go through
# ccache when it is installed (Debian's ccache; ~/.cache/ccache unless CCACHE_DIR is set).
# Writes build-matrix/matrix.json in meson's testlog.json form, one entry per configuration
# with its errors in stdout, for scripts/summary.py; build-matrix/NAME.log holds its output.
# Ends with one line: "matrix: N of N configurations built in S s"; exits 1 if one failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=build-matrix

# name, compiler, meson options
configs=(
  "gcc-plain          gcc   --buildtype=plain"
  "gcc-debug          gcc   --buildtype=debug"
  "gcc-debugoptimized gcc   --buildtype=debugoptimized"
  "gcc-release        gcc   --buildtype=release"
  "gcc-minsize        gcc   --buildtype=minsize"
  "clang-debug        clang --buildtype=debug"
  "clang-release      clang --buildtype=release"
  "no-examples        gcc   --buildtype=plain -Dexamples=false"
  "no-tests           gcc   --buildtype=plain -Dtests=false"
  "no-opencl-no-mpi   gcc   --buildtype=plain -Dopencl=disabled -Dmpi=disabled"
  "clang-fuzz         clang --buildtype=plain -Dfuzz=true -Dmpi=auto"
)

ccache=""
command -v ccache >/dev/null && ccache=ccache
# ccache keys a compile with -g on its directory too, so a fresh clone elsewhere (CI) would
# miss the cache in every debug-info build. These builds are only compiled, never debugged.
export CCACHE_NOHASHDIR=1

# Configures (anew when the compiler or options changed) and compiles one configuration;
# its output goes to build-matrix/NAME.log.
build_one() { # build_one NAME CC OPTIONS...
  local name=$1 compiler=$2 dir=$root/$1
  shift 2
  local options="$* -Dwerror=true"
  case " $* " in *" -Dmpi="*) ;; *) options="$options -Dmpi=enabled" ;; esac
  local stamp="$compiler $options"
  if [ ! -f "$dir/build.ninja" ] || [ "$(cat "$dir/matrix-config" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$dir"
    # shellcheck disable=SC2086 # one word per option
    CC="${ccache:+$ccache }$compiler" meson setup "$dir" $options >"$root/$name.log" 2>&1 ||
      return 1
    echo "$stamp" >"$dir/matrix-config"
  else
    : >"$root/$name.log"
  fi
  # -k 0: every failing file of the configuration is reported, not only the first.
  ninja -C "$dir" -k 0 >>"$root/$name.log" 2>&1
}

# One testlog.json line: the configuration, its result and, when it failed, the errors.
log_entry() { # log_entry NAME RESULT SECONDS
  python3 -c 'import json, re, sys
name, result, secs, log = sys.argv[1:]
try:
    lines = open(log, errors="replace").read().splitlines()
except OSError:
    lines = []
errors = [l for l in lines if re.search(r"error:|^FAILED:|^ERROR:|undefined reference", l)][:40]
print(json.dumps({"name": "matrix-" + name, "result": result, "duration": float(secs),
                  "stdout": "\n".join(errors) if result != "OK" else ""}))' \
    "$1" "$2" "$3" "$root/$1.log"
}

mkdir -p "$root"
rm -f "$root/matrix.json"
built=0
total=0
start=$SECONDS
for entry in "${configs[@]}"; do
  read -r name compiler options <<<"$entry"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then
    continue
  fi
  total=$((total + 1))
  t0=$SECONDS
  # shellcheck disable=SC2086 # one word per option
  if build_one "$name" "$compiler" $options; then
    result=OK
    built=$((built + 1))
  else
    result=FAIL
  fi
  echo "matrix: $name ($compiler $options): $result in $((SECONDS - t0)) s"
  [ "$result" = OK ] || grep -E "error:|^FAILED:|^ERROR:|undefined reference" "$root/$name.log" | head -20
  log_entry "$name" "$result" "$((SECONDS - t0))" >>"$root/matrix.json"
done
echo "matrix: $built of $total configurations built in $((SECONDS - start)) s"
[ "$built" -eq "$total" ] && [ "$total" -gt 0 ]
