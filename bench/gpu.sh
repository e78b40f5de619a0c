#!/usr/bin/env bash
# On a machine with a CUDA GPU and a CUDA build of torch in .venv (or the active Python): the GPU-marked tests,
# then the GPU pretraining bench (BERT-base, sequence 128 and 512, bf16). About 5 minutes on an A100 or H100.
# Written before a GPU was lent to this project: not yet run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 300 "$PY" -m pytest -q -m gpu tests
timeout 300 "$PY" bench/bench_gpu.py
