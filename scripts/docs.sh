#!/usr/bin/env bash
# Build the documentation site into site/ (or the folder given with -d), failing on any
# broken link, reference or generated page. `.venv/bin/mkdocs serve` previews it live.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_MKDOCS_2_WARNING=1
.venv/bin/mkdocs build --strict "$@"
