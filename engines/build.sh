#!/usr/bin/env bash
# Fetch the pinned ONNX Runtime (C/C++ API headers + shared library) and build the engines.
#
#   engines/build.sh [--check] [--install-system-packages] [-- EXTRA CMAKE ARGS...]
#
#   --check                    only check the toolchain; exit 3 (with the reason on stderr) if something is missing
#   --install-system-packages  apt-get install what is missing of cmake, g++, libpng-dev, libjpeg-dev,
#                              nlohmann-json3-dev (needs root)
#
# Environment: RTDETR_ENGINES_BUILD (build folder, default engines/build), RTDETR_ENGINES_DEPS (downloads,
# default engines/.deps), ORT_VERSION (default below), TensorRT_ROOT (adds the TensorRT backend), JOBS,
# DEBIAN_MIRROR (default: the Debian mirror in the system's apt sources).
#
# Where ONNX Runtime comes from (no prebuilt archive outside the package registries is downloaded):
#   library  PyPI wheel onnxruntime==$ORT_VERSION, file onnxruntime/capi/libonnxruntime.so.$ORT_VERSION; taken from
#            the installed Python package when its version matches, else fetched with `pip download`
#   headers  Debian package libonnxruntime-dev=$ORT_HEADERS_VERSION from the $ORT_HEADERS_SUITE suite (bookworm has
#            no ONNX Runtime package), fetched with apt-get into a private apt state under the deps folder; the
#            system's apt configuration is not touched. These headers declare API version 21; a newer library
#            serves every older API version, so they work with the newer wheel library.
set -euo pipefail

ORT_VERSION=${ORT_VERSION:-1.32.0}
ORT_HEADERS_SUITE=trixie
ORT_HEADERS_VERSION=1.21.0+dfsg-1
SYSTEM_PACKAGES="cmake g++ make libpng-dev libjpeg-dev nlohmann-json3-dev"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${RTDETR_ENGINES_BUILD:-$HERE/build}
DEPS=${RTDETR_ENGINES_DEPS:-$HERE/.deps}
ORT_DIR=$DEPS/onnxruntime-$ORT_VERSION
PYTHON=${PYTHON:-python3}

CHECK_ONLY=0
INSTALL_SYSTEM=0
CMAKE_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --check) CHECK_ONLY=1 ;;
    --install-system-packages) INSTALL_SYSTEM=1 ;;
    --) shift; CMAKE_EXTRA=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[engines] $*" >&2; }

# Exit status 3 means "toolchain unavailable": the tests skip on it (outside CI) instead of failing.
missing_toolchain() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=("cmake")
  local cxx=${CXX:-c++}
  command -v "$cxx" >/dev/null 2>&1 || cxx=g++
  command -v "$cxx" >/dev/null 2>&1 || missing+=("a C++17 compiler (g++)")
  command -v "$PYTHON" >/dev/null 2>&1 || missing+=("python3")
  local probe
  for probe in png.h:libpng-dev jpeglib.h:libjpeg-dev nlohmann/json.hpp:nlohmann-json3-dev; do
    if ! printf '#include <stdio.h>\n#include <%s>\n' "${probe%%:*}" | "$cxx" -E -x c++ - >/dev/null 2>&1; then
      missing+=("${probe%%:*} (Debian: ${probe##*:})")
    fi
  done
  if [ ! -f "$ORT_DIR/.complete" ]; then
    command -v apt-get >/dev/null 2>&1 || missing+=("apt-get (to fetch the ONNX Runtime headers)")
    command -v dpkg-deb >/dev/null 2>&1 || missing+=("dpkg-deb")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    local joined
    printf -v joined '%s, ' "${missing[@]}"
    echo "${joined%, }"
  fi
}

MISSING=$(missing_toolchain)
if [ -n "$MISSING" ] && [ "$INSTALL_SYSTEM" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "build.sh: --install-system-packages needs root" >&2
    exit 3
  fi
  log "installing $SYSTEM_PACKAGES"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $SYSTEM_PACKAGES >/dev/null
  MISSING=$(missing_toolchain)
fi
if [ -n "$MISSING" ]; then
  echo "build.sh: toolchain unavailable, missing: $MISSING (try: sudo apt-get install $SYSTEM_PACKAGES)" >&2
  exit 3
fi
[ "$CHECK_ONLY" = 1 ] && exit 0

fetch_headers() {
  local apt_dir=$DEPS/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/prefs"
  # The Debian mirror the system already uses (so proxies and local mirrors keep working), or DEBIAN_MIRROR.
  local mirror=${DEBIAN_MIRROR:-}
  if [ -z "$mirror" ]; then
    mirror=$(apt-get indextargets --format '$(ORIGIN)|$(CODENAME)|$(REPO_URI)' 2>/dev/null |
             awk -F'|' '$1 == "Debian" && $2 !~ /-(security|updates|backports)$/ {print $3; exit}')
  fi
  if [ -z "$mirror" ]; then
    echo "build.sh: no Debian mirror in the apt sources; set DEBIAN_MIRROR to one (its .../debian/ URL)" >&2
    exit 1
  fi
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  echo "deb [signed-by=$keyring] $mirror $ORT_HEADERS_SUITE main" >"$apt_dir/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
              -o "Dir::Etc::Preferences=$apt_dir/prefs/none" -o "Dir::Etc::PreferencesParts=$apt_dir/prefs"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
              -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -qq)
  log "fetching ONNX Runtime headers: Debian $ORT_HEADERS_SUITE libonnxruntime-dev=$ORT_HEADERS_VERSION"
  apt-get "${opts[@]}" update
  local want=$ORT_HEADERS_VERSION
  if ! (cd "$apt_dir" && apt-get "${opts[@]}" download "libonnxruntime-dev=$want" 2>/dev/null); then
    # A stable point release replaces the pinned version in the archive; the C API headers stay compatible.
    want=$(apt-cache "${opts[@]}" policy libonnxruntime-dev | sed -n 's/^ *Candidate: //p')
    log "libonnxruntime-dev $ORT_HEADERS_VERSION is gone from $ORT_HEADERS_SUITE; using $want"
    (cd "$apt_dir" && apt-get "${opts[@]}" download "libonnxruntime-dev=$want")
  fi
  local deb
  deb=$(ls "$apt_dir"/libonnxruntime-dev_*.deb | head -n 1)
  rm -rf "$apt_dir/extract"
  dpkg-deb -x "$deb" "$apt_dir/extract"
  rm -rf "$ORT_DIR/include"
  mkdir -p "$ORT_DIR/include"
  cp -r "$apt_dir/extract/usr/include/onnxruntime/." "$ORT_DIR/include/"
  cp "$apt_dir/extract/usr/share/doc/libonnxruntime-dev/copyright" "$ORT_DIR/include/COPYRIGHT.debian"
  echo "$want" >"$ORT_DIR/include/VERSION.debian"
  rm -f "$deb"
}

fetch_library() {
  mkdir -p "$ORT_DIR/lib"
  local lib=$ORT_DIR/lib/libonnxruntime.so.$ORT_VERSION
  local installed
  installed=$("$PYTHON" - "$ORT_VERSION" <<'PY' 2>/dev/null || true
import os, sys
from importlib import metadata
try:
    if metadata.version("onnxruntime") != sys.argv[1]:
        raise SystemExit
    import onnxruntime
except Exception:
    raise SystemExit
path = os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so." + sys.argv[1])
if os.path.isfile(path):
    print(path)
PY
)
  if [ -n "$installed" ]; then
    log "ONNX Runtime library: installed Python package onnxruntime $ORT_VERSION"
    cp "$installed" "$lib.tmp"
  else
    log "ONNX Runtime library: pip download onnxruntime==$ORT_VERSION"
    local wheels=$DEPS/wheels
    mkdir -p "$wheels"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheels" "onnxruntime==$ORT_VERSION"
    "$PYTHON" - "$wheels" "$ORT_VERSION" "$lib.tmp" <<'PY'
import glob, shutil, sys, zipfile
wheels, version, target = sys.argv[1:]
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
for wheel in sorted(glob.glob(f"{wheels}/onnxruntime-{version}-*.whl")):
    with zipfile.ZipFile(wheel) as zf:
        if member in zf.namelist():
            with zf.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            raise SystemExit(0)
raise SystemExit(f"no {member} in the downloaded onnxruntime wheel")
PY
  fi
  chmod 755 "$lib.tmp"
  mv "$lib.tmp" "$lib"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/lib/libonnxruntime.so.1"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/lib/libonnxruntime.so"
}

if [ ! -f "$ORT_DIR/.complete" ]; then
  mkdir -p "$ORT_DIR"
  [ -f "$ORT_DIR/include/onnxruntime_cxx_api.h" ] || fetch_headers
  [ -f "$ORT_DIR/lib/libonnxruntime.so.$ORT_VERSION" ] || fetch_library
  touch "$ORT_DIR/.complete"
fi

GENERATOR=()
if [ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
  GENERATOR=(-G Ninja)
fi
TRT_ARGS=()
if [ -n "${TensorRT_ROOT:-}" ]; then
  TRT_ARGS=(-DTensorRT_ROOT="$TensorRT_ROOT")
fi
log "configuring $BUILD"
mkdir -p "$BUILD"
cmake -S "$HERE" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release -DONNXRUNTIME_ROOT="$ORT_DIR" \
  "${TRT_ARGS[@]}" "${CMAKE_EXTRA[@]}" >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log" >&2; exit 1; }
grep -E "backend:" "$BUILD/configure.log" | sed 's/^-- /[engines] /' >&2 || true
log "building"
cmake --build "$BUILD" --parallel "${JOBS:-$(nproc)}"
log "done: $BUILD/rtdetr_detect, $BUILD/rtdetr_image, $BUILD/rtdetr_host_step"
