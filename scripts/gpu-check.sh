#!/usr/bin/env bash
# GPU check for an NVIDIA machine with no network. Unpack gpu-check.tar.gz
# (made by `make gpu-check`) there and run:
#
#   XLA_CUDA_PLUGIN=/abs/path/xla_cuda_plugin.so ./run.sh
#
# The plugin comes from the jax-cuda13-pjrt wheel (jax_plugins/xla_cuda13/).
# It checks that XLA-CUDA logits match the Go backend's on the golden
# checkpoints and that 20 LoRA training steps on XLA-CUDA take the same
# losses as on the Go backend, then measures forward and generation tokens/s
# on a random model of Llama-3.2-1B's shape.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
plugin=${XLA_CUDA_PLUGIN:?set XLA_CUDA_PLUGIN to the absolute path of xla_cuda_plugin.so}
bin="$here/distillery"
gpu="xla:$plugin"
export GOPJRT_CUDA_CHECKS=0 # the plugin finds its CUDA libraries by its own RPATH

echo "== logits: XLA-CUDA vs Go backend on the golden checkpoints"
for d in "$here"/golden/*/; do
  "$bin" model logits --model "$d" --ids 1,5,9,13,17,21,25,29,33,37,41 --backend "$gpu,tf32=false" \
    --compare-backend go:ops_sequential --tolerance 1e-3
done

echo "== training: 20 LoRA steps on XLA-CUDA (tf32 off) and on the Go backend, same seed"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#@BASE@#$here/train/base#; s#@DATA@#$here/train/reviews.jsonl#" "$here/train/recipe.yaml" > "$work/recipe.yaml"
for be in "$gpu,tf32=false" go:ops_sequential; do
  tag=${be%%:*}
  SECONDS=0
  GOMLX_BACKEND=$be "$bin" --runs-dir "$work/$tag" run --progress none --until train "$work/recipe.yaml" >/dev/null
  echo "$tag: ${SECONDS} s"
done
losses() { grep -h '"loss"' "$work/$1"/*/*/train/metrics.jsonl | sed 's/.*"loss":\([-0-9.e]*\).*"step":\([0-9]*\).*/\2 \1/'; }
paste <(losses xla) <(losses go) | awk '
  { d = $2 - $4; if (d < 0) d = -d; r = d / ($4 > 0 ? $4 : 1); if (r > m) m = r
    printf "step %3d  loss xla %.6f  go %.6f\n", $1, $2, $4 }
  END { printf "max relative loss difference: %.2e (tolerance 1e-2)\n", m
        if (NR < 20 || m > 1e-2) { print "FAIL: the backends trained differently"; exit 1 } }'

echo "== speed: random Llama-3.2-1B-shaped model on $gpu"
"$bin" model bench --llama-3.2-1b --batch 8 --seq 512 --iters 5 --new-tokens 64 --backend "$gpu" --json
"$bin" model bench --llama-3.2-1b --batch 8 --seq 512 --iters 5 --new-tokens 64 --dtype bf16 --backend "$gpu" --json
