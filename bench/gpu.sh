#!/usr/bin/env bash
# GPU benchmark in one command (under 8 minutes on an H100/H200): hiera-large, random weights,
# bf16; image encoder, cached prompt and 32x32 automatic mode, eager and with torch.compile,
# and peak GPU memory. `bench/gpu.sh --small` runs a shrunken version anywhere (CPU included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap
export PYTHONUNBUFFERED=1
exec .venv/bin/python bench/gpu.py "$@"
