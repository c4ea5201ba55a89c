#!/usr/bin/env bash
# Set up, lint, then run the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # nothing is ever fetched from a hub
.venv/bin/python -m pytest "$@"
