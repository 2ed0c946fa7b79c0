#!/usr/bin/env bash
# Fuzz the engines' file readers with libFuzzer under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   engines/fuzz.sh [--install-system-packages] SECONDS [TARGET...]
#
#   TARGET   sidecar, image, onnx (default: all three). Each runs SECONDS seconds on a copy of its seed corpus
#            (engines/fuzz/corpus/TARGET); the targets run side by side, one process each. SECONDS 0: install (with
#            the flag) and build only, as CI's set-up does before the test suite fuzzes.
#   --install-system-packages  apt-get install clang, its libFuzzer runtime and the libraries' headers if missing
#
# Builds with clang into engines/build-fuzz (RTDETR_FUZZ_BUILD). Prints each target's executions and coverage;
# exits 1 on any crash, leak, sanitizer report or timeout (the input is saved as build-fuzz/crashes/TARGET-*),
# 3 when clang or its fuzzer runtime is missing (the tests skip on it), 2 on bad arguments.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${RTDETR_FUZZ_BUILD:-$HERE/build-fuzz}
ALL_TARGETS=(sidecar image onnx)

INSTALL_SYSTEM=0
if [ "${1:-}" = "--install-system-packages" ]; then INSTALL_SYSTEM=1; shift; fi
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: engines/fuzz.sh [--install-system-packages] SECONDS|0 [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
  exit 2
fi
SECONDS_EACH=$1
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (${ALL_TARGETS[*]})" >&2; exit 2; }
done

log() { echo "[fuzz] $*" >&2; }

CXX_FUZZ=${CXX_FUZZ:-clang++}
# libFuzzer ships in clang's runtime package (Debian: libclang-rt-N-dev, only recommended by clang), so linking a
# trivial target is the real test.
missing_toolchain() {
  command -v cmake >/dev/null 2>&1 || { echo "cmake"; return; }
  command -v "$CXX_FUZZ" >/dev/null 2>&1 || { echo "clang++ (Debian: clang)"; return; }
  local probe
  probe=$(mktemp -d)
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$probe/t.cpp"
  if ! "$CXX_FUZZ" -fsanitize=fuzzer,address,undefined "$probe/t.cpp" -o "$probe/t" >/dev/null 2>&1; then
    echo "the libFuzzer runtime (Debian: libclang-rt-$(clang_major)-dev)"
  fi
  rm -rf "$probe"
  for header in png.h:libpng-dev jpeglib.h:libjpeg-dev nlohmann/json.hpp:nlohmann-json3-dev; do
    if ! printf '#include <stdio.h>\n#include <%s>\n' "${header%%:*}" | "$CXX_FUZZ" -E -x c++ - >/dev/null 2>&1; then
      echo "${header%%:*} (Debian: ${header##*:})"
    fi
  done
}
clang_major() { "$CXX_FUZZ" --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1; }

MISSING=$(missing_toolchain)
if [ -n "$MISSING" ] && [ "$INSTALL_SYSTEM" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "fuzz.sh: --install-system-packages needs root" >&2; exit 3; }
  log "installing clang and the libraries' headers"
  apt-get update -qq
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends cmake clang libpng-dev libjpeg-dev nlohmann-json3-dev >/dev/null
  apt-get install -y -qq --no-install-recommends "libclang-rt-$(clang_major)-dev" >/dev/null
  MISSING=$(missing_toolchain)
fi
if [ -n "$MISSING" ]; then
  echo "fuzz.sh: toolchain unavailable, missing: $(echo "$MISSING" | paste -sd, | sed 's/,/, /g')" \
       "(try: engines/fuzz.sh --install-system-packages)" >&2
  exit 3
fi

log "building $BUILD"
mkdir -p "$BUILD"
GENERATOR=()
if [ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then GENERATOR=(-G Ninja); fi
CXX=$CXX_FUZZ cmake -S "$HERE/fuzz" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" --parallel "${JOBS:-$(nproc)}" >"$BUILD/build.log" 2>&1 || { cat "$BUILD/build.log" >&2; exit 1; }
if [ "$SECONDS_EACH" = 0 ]; then log "built; no fuzzing asked for (SECONDS 0)"; exit 0; fi

mkdir -p "$BUILD/crashes" "$BUILD/logs"
pids=()
for t in "${TARGETS[@]}"; do
  work=$BUILD/corpus/$t
  rm -rf "$work"
  mkdir -p "$work"
  cp "$HERE/fuzz/corpus/$t/"* "$work/"
  # -timeout: one input taking this long is reported (a hang); -max_len: room to grow beyond the seeds.
  (cd "$BUILD" && exec "./fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=25 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$BUILD/crashes/$t-" "$work" >"$BUILD/logs/$t.log" 2>&1) &
  pids+=($!)
done

status=0
for i in "${!TARGETS[@]}"; do
  t=${TARGETS[$i]}
  rc=0
  wait "${pids[$i]}" || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$BUILD/logs/$t.log" | tail -n 1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$BUILD/logs/$t.log" | tail -n 1)
  # The last status line (#N ... cov: C ft: F corp: ...) holds the final coverage.
  cov=$(grep -E '^#[0-9]+' "$BUILD/logs/$t.log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' || true)
  if [ "$rc" = 0 ]; then
    echo "fuzz $t: ${runs:-?} executions in ${took:-?} s, $cov, no crash"
  else
    status=1
    echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} executions; log: $BUILD/logs/$t.log"
    grep -E 'ERROR: |SUMMARY: |runtime error|Test unit written' "$BUILD/logs/$t.log" | head -n 8 | sed 's/^/  /'
  fi
done
exit $status
