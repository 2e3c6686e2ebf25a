#!/usr/bin/env bash
# Installs a CUDA 13.4 toolkit (nvcc, cudart, cuBLAS, cuRAND, NVRTC, CCCL) from NVIDIA's PyPI
# wheels into srlm's cache, for compiling `--features cuda` on a machine with no GPU and no
# system CUDA:
#   ${SRLM_CACHE:-~/.cache/srlm}/tools/cuda-13.4.3/venv/…/site-packages/nvidia/cu13/
# Prints that folder (the CUDA root: bin/nvcc, include/, lib/) on stdout. A finished install
# is reused (second call: instant); concurrent callers wait on one lock.
#
# What the wheels lack is added here, inside the cache only:
# - unversioned `lib*.so` links (the wheels ship `libcublas.so.13` …; the linker wants
#   `libcublas.so`);
# - `lib/stubs/libcuda.so`: the driver library is not a toolkit part (it comes with the GPU
#   driver). The stub has SONAME `libcuda.so.1` and every `cu*` function of cudarc's driver
#   bindings (read from the cudarc source cargo fetched), each returning
#   CUDA_ERROR_NO_DEVICE (100). It exists only to link; on a GPU machine the driver's own
#   `libcuda.so.1` is loaded at start-up. With the stub on the library path a CUDA build
#   starts and falls back to the CPU (`srlm_model::default_device`).
#
# About 650 MB download, 1.2 GB installed (cuBLAS is most of it), a minute or two. Needs
# python3 with venv and pip, gcc, cargo (for cudarc's source) and the package registries.
# Found by trying: ../shared/design/cuda-build.md in the project's notes, docs/gpu.md here.
set -euo pipefail
VERSION=13.4.3
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SRLM_CACHE:-$HOME/.cache/srlm}"
ROOT="$CACHE/tools/cuda-$VERSION"
VENV="$ROOT/venv"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9
log() { echo "install-cuda-toolkit: $*" >&2; }
cuda_root() { "$VENV/bin/python" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13"))'; }
BUILD_ID="$VERSION,stub-v1"
if [[ -x "$VENV/bin/python" && "$(cat "$ROOT/.complete" 2>/dev/null)" == "$BUILD_ID" ]]; then
  cuda_root
  exit 0
fi
rm -rf "$VENV" "$ROOT/.complete"
log "creating $VENV and installing cuda-toolkit==$VERSION (nvcc, cudart, cublas, curand, nvrtc, cccl) from PyPI (about 650 MB)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
  "cuda-toolkit[nvcc,cudart,cublas,curand,nvrtc,cccl]==$VERSION" >&2
CU="$(cuda_root)"
[[ -x "$CU/bin/nvcc" ]] || { log "no nvcc at $CU/bin/nvcc after the install"; exit 1; }
"$CU/bin/nvcc" --version | tail -2 >&2

# Unversioned links for the linker.
for lib in "$CU"/lib/lib*.so.*; do
  base="$(basename "$lib")"
  plain="${base%%.so.*}.so"
  [[ -e "$CU/lib/$plain" ]] || ln -s "$base" "$CU/lib/$plain"
done

# The driver stub, from the functions cudarc 0.19 declares (its source is in cargo's registry;
# the default build never downloads it, so fetch first).
(cd "$HERE/.." && cargo fetch --quiet) >&2
MANIFEST="$(cd "$HERE/.." && cargo metadata --quiet --format-version 1 --features cuda \
  | "$VENV/bin/python" -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="cudarc"))')"
BINDINGS="$(dirname "$MANIFEST")/src/driver/sys/mod.rs"
[[ -f "$BINDINGS" ]] || { log "cudarc's driver bindings not found at $BINDINGS"; exit 1; }
mkdir -p "$CU/lib/stubs"
grep -oE '^\s*(pub )?fn cu[A-Za-z0-9_]+\(' "$BINDINGS" | grep -oE 'cu[A-Za-z0-9_]+' | sort -u \
  | awk 'BEGIN { print "/* libcuda stub for linking only: every function returns CUDA_ERROR_NO_DEVICE. */" }
         { printf "int %s(void) { return 100; }\n", $1 }' > "$CU/lib/stubs/cuda-stub.c"
COUNT="$(grep -c '^int ' "$CU/lib/stubs/cuda-stub.c")"
(( COUNT > 100 )) || { log "only $COUNT driver functions found in $BINDINGS"; exit 1; }
gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$CU/lib/stubs/libcuda.so" "$CU/lib/stubs/cuda-stub.c"
ln -sf libcuda.so "$CU/lib/stubs/libcuda.so.1"
log "driver stub: $COUNT functions in $CU/lib/stubs/libcuda.so"
echo "$BUILD_ID" > "$ROOT/.complete"
echo "$CU"
