#!/usr/bin/env bash
# The sweep behind docs/study.md: each setting is configs/study-cpu.toml plus overrides, run
# into runs/study/<name>, then one `srlm compare` of all of them (runs/study/comparison.md)
# and the table of docs/study.md (runs/study/sweep-table.md, scripts/study-table.py).
# A setting already complete is not run again (`--resume` says so and prints its summary).
# Usage: scripts/study-sweep.sh [NAME...]   (default: every setting below, in order)
set -euo pipefail
cd "$(dirname "$0")/.."
# SRLM=path runs that binary instead of building one.
if [ -z "${SRLM:-}" ]; then
  cargo build --release --quiet
  SRLM=target/release/srlm
fi
OUT=${STUDY_OUT:-runs/study}
mkdir -p "$OUT"

# name | overrides (srlm run arguments)
SETTINGS=(
  "lr1e-5|-c dpo.learning_rate=1e-5"
  "lr5e-5|"
  "lr5e-5-beta0.5|-c dpo.beta=0.5"
  "lr2e-5-ep4|-c dpo.learning_rate=2e-5 -c dpo.num_train_epochs=4"
  "lora16-all-lr2e-4|-c dpo.use_peft=true -c dpo.lora_r=16 -c dpo.lora_alpha=32 -c dpo.learning_rate=2e-4 -c dpo.lora_target_modules=[\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\",\"gate_proj\",\"up_proj\",\"down_proj\"]"
  "lr5e-5-k8|-c sampling.k=8"
  "lr1e-4|-c dpo.learning_rate=1e-4"
  "tsr-lr5e-5|--strategy temporal"
)

# The settings to run, in the order given (default: all, in the order above).
want=("$@")
if [ ${#want[@]} -eq 0 ]; then
  for s in "${SETTINGS[@]}"; do want+=("${s%%|*}"); done
fi
runs=()
for name in "${want[@]}"; do
  args=
  found=
  for s in "${SETTINGS[@]}"; do
    if [ "${s%%|*}" = "$name" ]; then args=${s#*|}; found=1; fi
  done
  if [ -z "$found" ]; then echo "unknown setting: $name" >&2; exit 2; fi
  dir="$OUT/$name"
  start=$(date +%s)
  # Overrides are words without spaces (TOML lists written without them).
  read -ra extra <<< "$args"
  if [ -f "$dir/config.json" ]; then
    "$SRLM" run --resume "$dir" > "$OUT/$name.log" 2>&1
  else
    "$SRLM" run --config configs/study-cpu.toml --out "$dir" "${extra[@]}" > "$OUT/$name.log" 2>&1
  fi
  echo "$name: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
  runs+=("$dir")
done
"$SRLM" compare "${runs[@]}" --out "$OUT" --overwrite
python3 scripts/study-table.py "$OUT" "${want[@]}" | tee "$OUT/sweep-table.md"
