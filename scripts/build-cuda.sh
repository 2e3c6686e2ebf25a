#!/usr/bin/env bash
# Builds srlm with `--features cuda` (candle's CUDA backend: cuBLAS, NVRTC, candle's kernels)
# on any Linux x86-64 machine, GPU or not, with the CUDA 13.4 toolkit that
# scripts/install-cuda-toolkit.sh installs from PyPI into srlm's cache.
#   scripts/build-cuda.sh            # → target/cuda/release/srlm (path printed on stdout)
# Environment:
#   CUDA_COMPUTE_CAP   the GPU's compute capability without the dot (default 90: H100/H200;
#                      80 for A100, 89 for L4/L40/RTX 40xx). The kernels are built for it only.
#   SRLM_CUDA_TARGET   the cargo target folder (default target/cuda: its own, so the CPU build
#                      in target/ is not rebuilt and a running `cargo test` does not block it).
# To run the binary: LD_LIBRARY_PATH="$(scripts/install-cuda-toolkit.sh)/lib" plus the GPU
# driver's libcuda.so.1 (on a machine without one, add the toolkit's lib/stubs: srlm then warns
# that no CUDA device is usable and runs on the CPU). The PTX needs a driver for CUDA ≥ 13.4.
# About 11 minutes from scratch on 2 cores (candle's kernels are 4 of them); later builds are
# incremental.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CU="$(bash "$ROOT/scripts/install-cuda-toolkit.sh")"
TARGET="${SRLM_CUDA_TARGET:-$ROOT/target/cuda}"
export PATH="$CU/bin:$PATH"
export CUDA_ROOT="$CU" CUDA_PATH="$CU" CUDA_TOOLKIT_ROOT_DIR="$CU"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
export LIBRARY_PATH="$CU/lib:$CU/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
cd "$ROOT"
cargo build --release --features cuda --target-dir "$TARGET" --bin srlm >&2
echo "$TARGET/release/srlm"
