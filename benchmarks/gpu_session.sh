#!/usr/bin/env bash
# One GPU session in one command (about 9 of the 10 minutes a device call may run):
#   here:      make gpu-wheels                      (the packages the GPU image lacks, into .whl/)
#   device:    bash benchmarks/gpu_session.sh       (carry: [".whl"]; timeout_s 600)
# It measures, on the one GPU: decoding speed (visible, erase, model.generate, before and after
# continuous batching, batch 512); GRPO's generation with each generator (TRL's model.generate,
# the project's decoder, TRL's continuous batching last as the slowest on the CPU;
# benchmarks/grpo_bench.py, 100 s at most); then, in what is left, benchmarks.gpu_study (its GRPO
# stage with the trl and project generators side by side) and experiment=countdown4_gpu side by
# side. What comes back in $OUT (at most 8 files): machine.txt, decode_bench.txt (the --reference
# run appended), grpo_bench.txt, table.md, report.md, countdown4_metrics.json, session.tar.gz
# (every run's metrics, samples and logs, no weights) and session.log.
# Figures go to docs/study-gpu.md with the machine and the command.
set -u
OUT=${OUT:-outputs/gpu_session}
WORK=${WORK:-/tmp/gpu_session}
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/session.log") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
PY=python3
start=$(date +%s)
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, transformers, trl, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__)"
  git log -1 --format='commit %H' 2>/dev/null; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# 1. decoding (about a minute each): the 25M model, random weights, 1024 prompts, batch 512
bench="$PY -m benchmarks.decode_bench --device cuda --size 25m --prompts 1024 --batch-size 512"
timeout 150 $bench --modes generate,visible,erase > "$OUT/decode_bench.txt" 2>&1
{ echo "--- the loops of before (--reference):"; timeout 90 $bench --modes visible,erase --reference; } >> "$OUT/decode_bench.txt" 2>&1
cat "$OUT/decode_bench.txt"

# 2. GRPO's generation, each generator on the same model and prompts (the GPU study's 25M model,
#    random weights, 16 prompts x 8 completions of up to 256 tokens, 3 steps, the first a warm-up)
timeout 100 $PY -W ignore -m benchmarks.grpo_bench --device cuda --size 25m --prompts 16 --num-generations 8 \
  --max-completion-length 256 --steps 3 --generators trl,project,trl_cb > "$OUT/grpo_bench.txt" 2>&1
cat "$OUT/grpo_bench.txt"

# 3. the study and the 4-number preset side by side, ending before the call's 10 minutes
left=$(( 560 - ($(date +%s) - start) ))
minutes=$(python3 -c "print(round(max(3.0, min(7.0, ($left - 30) / 60)), 1))")
echo "$left s left: gpu_study --minutes $minutes, countdown4_gpu with sft.max_minutes=$(python3 -c "print(round($minutes * 0.55, 1))")"
timeout $(( left - 15 )) $PY -m train experiment=countdown4_gpu hydra.run.dir="$WORK/countdown4" \
  sft.max_minutes=$(python3 -c "print(round($minutes * 0.55, 1))") > "$WORK/countdown4.log" 2>&1 &
c4=$!
$PY -m benchmarks.gpu_study --minutes "$minutes" --out "$WORK/study" --grpo-generators trl,project
wait $c4
echo "countdown4_gpu exit: $?"
tail -5 "$WORK/countdown4.log"

cp "$WORK/study/table.md" "$WORK/study/report.md" "$OUT/" 2>/dev/null
cp "$WORK/countdown4/metrics.json" "$OUT/countdown4_metrics.json" 2>/dev/null
tar -czf "$OUT/session.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pt' . 2>/dev/null
ls -la "$OUT"
