#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: a venv in .venv with CPU torch 2.13.0 and dreamlift.
# `bash scripts/setup.sh` for users, `bash scripts/setup.sh dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned: the local CPU wheel; anything else would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, dreamlift; print('dreamlift', dreamlift.__version__, '| torch', torch.__version__)"
