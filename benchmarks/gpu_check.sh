#!/usr/bin/env bash
# The GPU check: infpop's trial path on one NVIDIA GPU, offline, in under 8 minutes.
#
#   benchmarks/gpu_check.sh [--cpu] [--work DIR] [--hardware h200] [--models 1b 8b] [--batch-sizes 16 128 1024]
#
# Needs: python3 with PyTorch (CUDA build), transformers, accelerate and nvidia-ml-py installed;
# infpop's other pure-Python dependencies (pydantic, PyYAML, submitit, tqdm, huggingface_hub) either
# installed too or as wheels next to this script (or in wheels/ beside it), installed offline into
# a virtual environment that sees the system's packages. No network, no model hub: the models are
# Llama-shaped with random weights, built on the GPU (benchmarks/gpu_check.py says what it runs
# and prints). --cpu runs the same path with the tiny model on the CPU (CI, under a minute).
# Exit status 1 when the check fails; the table is also written to <work>/gpu_check.txt.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
py=${PYTHON:-python3}
work=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ ${args[i]} == --work ]] && work=${args[i + 1]:-}
done
if [[ -z $work ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/infpop-gpu-check.XXXX")
    set -- "$@" --work "$work"
fi
mkdir -p "$work"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error
deps="import pydantic, yaml, submitit, tqdm, huggingface_hub"
if ! "$py" -c "$deps" 2>/dev/null; then
    "$py" -m venv --system-site-packages "$work/venv"
    py=$work/venv/bin/python
    "$py" -m pip install --quiet --no-index --find-links "$here" --find-links "$here/wheels" \
        pydantic PyYAML submitit tqdm huggingface_hub
fi
export PYTHONPATH="$repo/toolkit${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu_check: work folder $work"
exec "$py" "$here/gpu_check.py" "$@"
