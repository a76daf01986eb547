#!/usr/bin/env bash
# make bench: LoRA against full fine-tuning on the quickstart student base,
# same data and steps: optimizer-state bytes and the process's peak RSS
# (VmHWM), from each run's train/train.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/distillery}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
common=(--runs-dir "$runs" run --progress none --until train --set teacher.kind=labels --set data.max_examples=400
  --set train.max_steps=10 --set train.eval_every=0)
printf '%-10s %12s %18s %16s %12s\n' mode trainable optimizer_bytes peak_rss_MiB tokens/s
for mode in lora full; do
  extra=()
  [ "$mode" = full ] && extra=(--set lora.enabled=false)
  "$BIN" "${common[@]}" "${extra[@]}" recipes/examples/quickstart.yaml >/dev/null
  f=$(ls -t "$runs"/fine-foods-sentiment/*/train/train.json | head -1)
  get() { grep -o "\"$1\": *[0-9.e+-]*" "$f" | head -1 | grep -o '[0-9.e+-]*$'; }
  printf '%-10s %12s %18s %16.1f %12.0f\n' "$mode" "$(get trainable_params)" "$(get optimizer_state_bytes)" \
    "$(echo "$(get peak_rss_bytes) / 1048576" | bc -l)" "$(get tokens_per_second)"
done
