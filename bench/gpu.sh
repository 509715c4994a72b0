#!/usr/bin/env bash
# The GPU benchmark in one command, made for a bare GPU machine with no network:
#
#   bench/gpu-wheels.sh        # here, once: .whl/ with sam2 and what that machine's image lacks
#   bench/gpu.sh               # there (with .whl carried): hiera-large and tiny, both pipelines,
#                              # eager and compiled, then fast-vs-exact quality (bench/quality.py)
#   bench/gpu.sh --small       # anywhere, the CPU included: tiny, 4x4 grid, few repeats
#
# It uses the machine's own Python and torch when .whl/ is present (else the project's .venv),
# reports them first, and runs each stage under its own timeout inside GPU_BENCH_BUDGET_S
# (default 420 s). Rows are appended to $OUT/gpu-rows.md (or bench/out/) as they are measured,
# so a stage cut short keeps the rows before it; a stage that did not finish says so in its row.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/out}
mkdir -p "$out"
rows="$out/gpu-rows.md"
log="$out/gpu-log.txt"
cat >"$rows" <<'MD'
| card | model | variant | image encoder ms | new image + click ms | cached click ms | auto ms (grid, masks) | peak GPU GiB |
|---|---|---|---:|---:|---:|---:|---:|
MD
: >"$log"
started=$(date +%s)
budget=${GPU_BENCH_BUDGET_S:-420}
export PYTHONUNBUFFERED=1

if ls .whl/*.whl >/dev/null 2>&1 && python3 -c "import torch" 2>/dev/null; then
  py=python3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/sam2-site .whl/*.whl >>"$log" 2>&1 || { echo "installing .whl failed"; cat "$log"; exit 1; }
  export PYTHONPATH="/tmp/sam2-site:$PWD/shared/src:$PWD/services/inference/src"
else
  scripts/bootstrap
  py=.venv/bin/python
fi

"$py" - <<'PY' | tee "$out/gpu-env.txt"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"capability {p.major}.{p.minor}")
else:
    print("no CUDA device: CPU only")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$out/gpu-env.txt"

# model pipeline variant grid repeats timeout_s
if [ "${1:-}" = "--small" ]; then
  stages=("tiny exact eager 4 2 120" "tiny fast eager 4 2 120")
  quality=(--model tiny --images 1 --clicks 4 --points-per-side 4)
else
  stages=("large exact eager 32 10 70" "large fast eager 32 10 50" "tiny fast eager 32 10 40"
          "large fast compile 32 10 150")
  quality=(--model large --images 4 --clicks 8 --points-per-side 16)
fi
for stage in "${stages[@]}"; do
  read -r model pipeline variant grid repeats limit <<<"$stage"
  left=$((budget - ($(date +%s) - started)))
  if [ "$left" -lt 20 ]; then
    echo "| - | $model | $pipeline $variant | not measured (benchmark budget spent) | | | | |" >>"$rows"
    continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $model $pipeline $variant (at most ${limit} s)" | tee -a "$log"
  timeout -k 5 "$limit" "$py" bench/gpu.py --model "$model" --pipeline "$pipeline" \
    --variant "$variant" --grid "$grid" --repeats "$repeats" --rows "$rows" >>"$log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || echo "| - | $model | $pipeline $variant | not measured (stage ended with $rc after ${limit} s limit) | | | | |" >>"$rows"
done
# The fast pipeline's masks against the exact one's (bench/quality.py), if time is left.
left=$((budget - ($(date +%s) - started)))
if [ "$left" -ge 60 ]; then
  echo "== quality (at most 60 s)" | tee -a "$log"
  timeout -k 5 60 "$py" bench/quality.py "${quality[@]}" \
    >"$out/quality.md" 2>>"$log" || echo "quality: not measured (ended with $?)" >>"$out/quality.md"
fi
# A click while another tenant's auto mode runs (bench/fairness.py), if time is left.
left=$((budget - ($(date +%s) - started)))
if [ "$left" -ge 60 ]; then
  echo "== fairness (at most 60 s)" | tee -a "$log"
  timeout -k 5 60 "$py" bench/fairness.py --model large --points-per-side 32 --clicks 20 \
    >"$out/fairness.md" 2>>"$log" || echo "fairness: not measured (ended with $?)" >>"$out/fairness.md"
fi
echo
cat "$rows"
[ -f "$out/quality.md" ] && cat "$out/quality.md"
echo "($(( $(date +%s) - started )) s)"
