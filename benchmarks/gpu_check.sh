#!/usr/bin/env bash
# GPU check (issue 23): on a machine with CUDA, the default image recipe end to end on ../shared/data/miml-scene and a
# 10,000-image synthetic folder: images/s per phase, peak GPU memory, GPU probabilities against CPU ones (64 images,
# 1e-3). Fails at once, with one line, where there is no CUDA device.
# Run from the repository root: benchmarks/gpu_check.sh [--synthetic 10000] [--out benchmarks/out/gpu] [--skip-scene]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False): run it on a machine with a GPU" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PYTHON" benchmarks/gpu_check.py "$@"
