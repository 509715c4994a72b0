#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with what bench/gpu.sh needs on a GPU machine that has Python and
# torch but no network: sam2 (built here without its CUDA extension, as the service runs it) and
# the pure-Python and cp312 packages its image lacks, and what
# tests/inference/runtime/test_accel.py needs there (uvicorn, pytest with pytest-asyncio). About 7 MB; carried with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pip=(python3 -m pip --disable-pip-version-check -q)
# Source-only on PyPI: built into wheels here.
SAM2_BUILD_CUDA=0 "${pip[@]}" wheel --no-deps -w .whl \
  "$(grep -E '^sam2==' constraints.txt)" antlr4-python3-runtime==4.9.3 iopath==0.1.10
"${pip[@]}" download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  pydantic-settings==2.16.3 python-dotenv==1.2.4 hydra-core==1.3.8 omegaconf==2.3.1 \
  fastapi==0.165.0 starlette==1.10.0 opentelemetry-api==1.45.2 annotated-doc==0.0.7 typing-extensions==4.16.0 \
  uvicorn==0.54.0 pytest==9.2.0 pytest-asyncio==1.5.0
du -sh .whl
