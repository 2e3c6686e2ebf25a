#!/usr/bin/env bash
# Installs TRL (Hugging Face's DPOTrainer), the external trainer of `[trainer] backend = "trl"`,
# into a virtualenv in srlm's cache:
#   ${SRLM_CACHE:-~/.cache/srlm}/tools/trl-1.16.0/venv/
# Prints the virtualenv's python on stdout (srlm finds it there by itself). A finished install
# is reused (second call: instant); concurrent callers wait on one lock.
#
# Versions: scripts/trl-requirements.txt pins every package (torch 2.15.0, transformers 5.24.0,
# trl 1.16.0, accelerate 1.15.0, peft 0.21.2 (LoRA) and what they pulled in on Linux x86_64 / CPython 3.11), all
# from PyPI. PyPI's torch brings its CUDA libraries: about 6 GB and 1.5-3 minutes with a
# fresh download (measured on this project's 2-core machine). Needs python3 with venv and pip.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SRLM_CACHE:-$HOME/.cache/srlm}"
ROOT="$CACHE/tools/trl-1.16.0"
VENV="$ROOT/venv"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9
REQ_SHA="$(sha256sum "$HERE/trl-requirements.txt" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && "$(cat "$ROOT/.complete" 2>/dev/null)" == "$REQ_SHA" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi
log() { echo "install-trl: $*" >&2; }
rm -rf "$VENV" "$ROOT/.complete"
log "creating $VENV and installing TRL 1.16.0 with a CPU-usable PyTorch 2.15.0 from PyPI (about 6 GB)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
  -r "$HERE/trl-requirements.txt" >&2
"$VENV/bin/python" -c "import trl, torch, transformers, accelerate; print('install-trl: trl', trl.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" >&2
echo "$REQ_SHA" > "$ROOT/.complete"
echo "$VENV/bin/python"
