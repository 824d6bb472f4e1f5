#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run of a few minutes: the CUDA tests (CUDA-graph decode step, QLoRA,
# bitsandbytes), then the decode, finetuning and pretraining benchmarks in their GPU mode on random weights (a GPU
# machine without network access has neither the GGUF models nor the Hub). Run from the repository root:
#
#     bash benchmarks/gpu_check.sh [OUTPUT_FOLDER]      # logs and tables land there (default: $OUT or /tmp/litgpt-gpu)
#
# Packages the machine may lack travel as wheels in .whl/ (installed first when the folder exists), for instance:
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 \
#         -d .whl jsonargparse docstring-parser typeshed-client gguf bitsandbytes
# Smaller runs for a smoke test: NEW_TOKENS=8 STEPS=1 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/litgpt-gpu}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
NEW_TOKENS="${NEW_TOKENS:-128}"
STEPS="${STEPS:-8}"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log, remember a failure
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "== $name failed (exit $rc)"; status=1; }
}

command -v nvidia-smi >/dev/null && nvidia-smi -L
python3 - <<'EOF'
import importlib.util, torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
missing = [m for m in ("jsonargparse", "gguf", "bitsandbytes", "transformers", "peft", "lightning") if importlib.util.find_spec(m) is None]
print("missing packages:", ", ".join(missing) or "none")
EOF
step tests 180 python3 -m pytest -p no:cacheprovider -m cuda -v -rs tests/test_compile.py tests/test_finetune.py tests/test_quantize.py
step decode 200 python3 benchmarks/decode.py --random --compile --dtypes bfloat16 --new_tokens "$NEW_TOKENS" --repeats 3 --workdir "$out/work"
step finetune 120 python3 benchmarks/finetune.py --random --rounds 1 --steps "$STEPS" --workdir "$out/work"
step pretrain 80 python3 benchmarks/pretrain.py --model_name SmolLM2-135M --precision bfloat16 --steps "$STEPS"
rm -rf "$out/work"
exit $status
