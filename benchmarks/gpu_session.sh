#!/usr/bin/env bash
# One GPU session in one command (about 9 of the 10 minutes a device call may run):
#   here:      make gpu-wheels                      (the packages the GPU image lacks, into .whl/)
#   device:    bash benchmarks/gpu_session.sh       (carry: [".whl"]; timeout_s 600)
# It measures, on the one GPU: decoding speed (visible, erase, model.generate, before and after
# continuous batching, batch 512; erase decoding on the device and by the host); GRPO's
# generation with each generator (benchmarks/grpo_bench.py: TRL's model.generate, the project's
# decoder, TRL's continuous batching); then, in what is left, benchmarks.gpu_study (its GRPO stage
# with the trl and project generators side by side) and experiment=countdown4_gpu side by side.
# What comes back in $OUT (8 files, the most a device call returns): machine.txt, decode_bench.txt
# (every decoding run, the loops of before last), grpo_bench.txt, table.md, report.md,
# countdown4_metrics.json, session.tar.gz (every run's metrics, samples and logs, no weights) and
# session.log.
# Figures go to docs/study-gpu.md with the machine and the command.
# REHEARSE=1 runs the same script on the CPU with tiny sizes (decode_bench on the tiny model,
# gpu_study --smoke, countdown4_gpu shrunk), to check its plumbing before device time is spent;
# with PY=<an interpreter like the GPU image's> and WHL=<wheels built for it> (make gpu-wheels
# GPU_PYTHON=3.11 GPU_WHEEL_DIR=...) it checks the carried wheels too (docs/study-gpu.md).
set -u
OUT=${OUT:-outputs/gpu_session}
WORK=${WORK:-/tmp/gpu_session}
WHL=${WHL:-.whl}
PY=${PY:-python3}
BUDGET=${BUDGET:-560}      # seconds this script may take (the device call's limit is 600)
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/session.log") 2>&1
if ls "$WHL"/*.whl >/dev/null 2>&1; then
  SITE=${SITE:-/tmp/site}
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHL"/*.whl || exit 1
  export PYTHONPATH=$SITE:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -n "${REHEARSE:-}" ]; then
  DEVICE=cpu
  BENCH_SIZES="--size tiny --prompts 16 --batch-size 8 --max-new-tokens 32"
  GRPO_SIZES="--size tiny --prompts 2 --num-generations 4 --max-completion-length 16 --steps 2"
  STUDY_ARGS="--smoke"
  C4_ARGS="hardware=cpu data.n=200 data.n_test=8 model.hidden_size=32 model.intermediate_size=64 \
model.num_hidden_layers=1 model.num_attention_heads=2 model.num_key_value_heads=2 sft.max_steps=4 \
sft.per_device_train_batch_size=8 sft.warmup_steps=0 sft.logging_steps=2 eval.n_problems=8 \
eval.num_samples=2 eval.k=[1,2] eval.batch_size=8 eval.max_new_tokens=48"
else
  DEVICE=cuda
  BENCH_SIZES="--size 25m --prompts 1024 --batch-size 512"
  GRPO_SIZES="--size 25m --prompts 16 --num-generations 8 --max-completion-length 256 --steps 3"
  STUDY_ARGS=""
  C4_ARGS=""
fi
start=$(date +%s)
{ date -u; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import sys, torch, transformers, trl, datasets, hydra; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__, 'hydra', hydra.__version__)"
  git log -1 --format='commit %H' 2>/dev/null; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# 1. decoding: the 25M model, random weights, 1024 prompts, batch 512; erase decoding on the device
#    (the default on a GPU) and by the host; then a before/after at a size the loops of before can
#    finish (512 prompts, one batch, 64 tokens). Short timeouts: a slow decoder is itself the finding,
#    and the study needs the time.
bench="$PY -m benchmarks.decode_bench --device $DEVICE $BENCH_SIZES"
small="--prompts 512 --max-new-tokens 64"
[ -n "${REHEARSE:-}" ] && small="--prompts 8 --max-new-tokens 16"
{ timeout 60 $bench --modes generate,visible,erase --erase-on-device on
  echo "--- erase decoding by the host (--erase-on-device off):"
  timeout 30 $bench --modes erase --erase-on-device off
  echo "--- before/after ($small): now, then the loops of before (--reference):"
  timeout 20 $bench $small --modes visible,erase
  timeout 40 $bench $small --modes visible,erase --reference; } > "$OUT/decode_bench.txt" 2>&1
cat "$OUT/decode_bench.txt"

# 2. GRPO's generation, each generator on the same model and prompts (the GPU study's 25M model,
#    random weights, 16 prompts x 8 completions of up to 256 tokens, 3 steps, the first a warm-up)
timeout 60 $PY -W ignore -m benchmarks.grpo_bench --device $DEVICE $GRPO_SIZES --generators trl,project,trl_cb \
  > "$OUT/grpo_bench.txt" 2>&1
cat "$OUT/grpo_bench.txt"

# 3. the study and the 4-number preset side by side, ending before the script's budget
left=$(( BUDGET - ($(date +%s) - start) ))
minutes=$($PY -c "print(round(max(3.0, min(7.0, ($left - 30) / 60)), 1))")
c4_minutes=$($PY -c "print(round($minutes * 0.55, 1))")
echo "$left s left: gpu_study --minutes $minutes, countdown4_gpu with sft.max_minutes=$c4_minutes"
timeout $(( left - 15 )) $PY -m train experiment=countdown4_gpu hydra.run.dir="$WORK/countdown4" \
  sft.max_minutes=$c4_minutes $C4_ARGS > "$WORK/countdown4.log" 2>&1 &
c4=$!
$PY -m benchmarks.gpu_study --minutes "$minutes" --out "$WORK/study" --grpo-generators trl,project $STUDY_ARGS
wait $c4
echo "countdown4_gpu exit: $?"
tail -5 "$WORK/countdown4.log"

cp "$WORK/study/table.md" "$WORK/study/report.md" "$OUT/" 2>/dev/null
cp "$WORK/countdown4/metrics.json" "$OUT/countdown4_metrics.json" 2>/dev/null
tar -czf "$OUT/session.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pt' . 2>/dev/null
echo "session: $(( $(date +%s) - start )) s"
ls -la "$OUT"
