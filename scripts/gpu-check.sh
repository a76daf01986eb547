#!/usr/bin/env bash
# GPU check for an NVIDIA machine with no network. Unpack gpu-check.tar.gz
# (made by `make gpu-check`) there and run:
#
#   XLA_CUDA_PLUGIN=/abs/path/xla_cuda_plugin.so ./run.sh
#
# The plugin comes from the jax-cuda13-pjrt wheel (jax_plugins/xla_cuda13/).
# It checks that XLA-CUDA logits match the Go backend's on the golden
# checkpoints, then measures forward and generation tokens/s on a random
# model of Llama-3.2-1B's shape.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
plugin=${XLA_CUDA_PLUGIN:?set XLA_CUDA_PLUGIN to the absolute path of xla_cuda_plugin.so}
bin="$here/distillery"
gpu="xla:$plugin"

echo "== logits: XLA-CUDA vs Go backend on the golden checkpoints"
for d in "$here"/golden/*/; do
  "$bin" model logits --model "$d" --ids 1,5,9,13,17,21,25,29,33,37,41 --backend "$gpu" \
    --compare-backend go:ops_sequential --tolerance 1e-3
done

echo "== speed: random Llama-3.2-1B-shaped model on $gpu"
"$bin" model bench --llama-3.2-1b --batch 8 --seq 512 --iters 5 --new-tokens 64 --backend "$gpu" --json
"$bin" model bench --llama-3.2-1b --batch 8 --seq 512 --iters 5 --new-tokens 64 --dtype bf16 --backend "$gpu" --json
