#!/usr/bin/env bash
# make demo: the quickstart end to end on this machine, offline.
#
#   1. serve the quickstart's teacher (models/fine-foods-teacher, built by
#      `make teacher`) over the OpenAI-compatible API on loopback;
#   2. run recipes/examples/quickstart.yaml: harvest the Fine Foods reviews
#      from it, distil the student (LoRA + KD), quantize it to INT4 (AWQ),
#      evaluate it against the parity gate and publish it to ./published;
#   3. print the student against the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/distillery}
PORT=${DISTILLERY_TEACHER_PORT:-8089}
mkdir -p build
"$BIN" validate recipes/examples/*.yaml
"$BIN" serve --model models/fine-foods-teacher --id fine-foods-teacher --addr "127.0.0.1:$PORT" 2>build/demo-teacher.log &
teacher=$!
trap 'kill $teacher 2>/dev/null; wait $teacher 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  kill -0 $teacher 2>/dev/null || { cat build/demo-teacher.log; exit 1; }
  sleep 0.2
done
echo "demo: teacher models/fine-foods-teacher serving on http://127.0.0.1:$PORT/v1"
DISTILLERY_TEACHER_URL="http://127.0.0.1:$PORT/v1" "$BIN" run "$@" recipes/examples/quickstart.yaml
