#!/usr/bin/env bash
# make teacher: builds the quickstart's models from the vendored Fine Foods
# reviews, reproducibly, and checks them against models/SHA256SUMS.
#
#   1. a byte-level BPE tokenizer of 4,000 tokens (train.jsonl texts only)
#   2. a base LM pretrained on the review texts (models/build/base-lm.yaml)
#   3. the teacher: the base LM fine-tuned on the gold labels (models/build/teacher.yaml)
#   4. the student base: the teacher pruned to 1/4 of its non-embedding parameters
#
# Outputs go to $DISTILLERY_BUILD (default build/teacher). With --install they
# replace models/ and SHA256SUMS is rewritten; without it, a rebuild whose
# hashes differ from the committed ones fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/distillery}
export DISTILLERY_BUILD=${DISTILLERY_BUILD:-$PWD/build/teacher}
install=0
[ "${1:-}" = "--install" ] && install=1
out=$DISTILLERY_BUILD
rm -rf "$out" && mkdir -p "$out"

step() { # step NAME COMMAND...: runs and prints the time it took
  local name=$1; shift
  local t0=$(date +%s.%N)
  "$@"
  printf 'make teacher: %-14s %6.1f s\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" | tee -a "$out/timings.txt"
}

step tokenizer "$BIN" tokenizer train --vocab 4000 --min-frequency 2 --out "$out/tokenizer" data/fine-foods/train.jsonl
step init "$BIN" model init --config models/build/base-config.json --seed 1 --dtype bf16 --tokenizer "$out/tokenizer" --out "$out/init"
step base-lm "$BIN" --runs-dir "$out/runs" run --progress json --until train models/build/base-lm.yaml
cp -r "$(ls -d "$out"/runs/fine-foods-base-lm/*/train/model | tail -1)" "$out/base-lm"
step teacher "$BIN" --runs-dir "$out/runs" run --progress json --until train models/build/teacher.yaml
cp -r "$(ls -d "$out"/runs/fine-foods-teacher/*/train/model | tail -1)" "$out/fine-foods-teacher"
step prune "$BIN" model prune --in "$out/fine-foods-teacher" --out "$out/fine-foods-student-base" \
  --keep-layers 0,3 --width 0.25 --calib data/fine-foods/train.jsonl --calib-samples 128 --dtype bf16
step score "$BIN" model eval --recipe models/build/teacher.yaml --model "$out/fine-foods-teacher" --split test --json | tee "$out/teacher-test.json"
python_free_check() { # the two numbers the quickstart needs, from the JSON the steps printed
  local pts; pts=$(grep -o '"points_over_majority": *[-0-9.e]*' "$out/teacher-test.json" | grep -o '[-0-9.e]*$')
  echo "make teacher: teacher test accuracy is $pts points above the majority class (target: 15)"
}
python_free_check

cd "$out"
find tokenizer fine-foods-teacher fine-foods-student-base -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
cd - >/dev/null
if [ $install = 1 ]; then
  rm -rf models/fine-foods-tokenizer models/fine-foods-teacher models/fine-foods-student-base
  cp -r "$out/tokenizer" models/fine-foods-tokenizer
  cp -r "$out/fine-foods-teacher" "$out/fine-foods-student-base" models/
  sed 's#  tokenizer/#  fine-foods-tokenizer/#' "$out/SHA256SUMS" > models/SHA256SUMS
  cp "$out/teacher-test.json" models/build/teacher-test.json
  cp "$out/timings.txt" models/build/timings.txt
  echo "make teacher: installed into models/ ($(du -sh models | cut -f1)); commit models/"
elif [ -f models/SHA256SUMS ]; then
  if diff <(sed 's#  tokenizer/#  fine-foods-tokenizer/#' "$out/SHA256SUMS") models/SHA256SUMS; then
    echo "make teacher: the rebuild matches models/SHA256SUMS ($(wc -l < models/SHA256SUMS) files)"
  else
    echo "make teacher: the rebuild differs from models/SHA256SUMS (above)" >&2
    exit 1
  fi
fi
