#!/usr/bin/env bash
# Install dfer and its whole stack into ./.venv (idempotent; ~2 min on a fresh machine).
# torch/torchvision are pinned together: timm needs torchvision, and only this pair installs from the
# machine's local wheel cache (see README "Install").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e ".[test]"
# facenet-pytorch ships the MTCNN weights inside its wheel (no download at run time); its metadata pins an
# old torch, so it is installed without dependencies (it only needs torch, torchvision, numpy, pillow).
.venv/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0
.venv/bin/python -c "import torch, timm, decord, av, mlflow, snakemake, dvc, facenet_pytorch, dfer" \
  && echo "dfer installed in .venv"
