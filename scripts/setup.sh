#!/usr/bin/env bash
# Create .venv and install everything the CPU path needs (runtime, export, evaluation, the
# catalog with every audio format and Ray, OpenVINO, `ttmr serve`, tests, the documentation site).
# Idempotent: re-running with an unchanged pyproject.toml only checks the stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.setup-stamp
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    echo "setup: .venv is up to date"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# The CPU wheel of torch. A range admitting a newer torch pulls several GB of CUDA packages,
# so torch is pinned here, before anything that depends on it is resolved.
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[export,dev,eval,catalog,formats,ray,openvino,serve,docs]"
# The browser test of `ttmr serve`'s page drives Debian's chromium through Playwright (whose
# own browser download needs the internet); without it that test is skipped.
if [ ! -x /usr/bin/chromium ]; then
    install_chromium() { apt-get install -y chromium || sudo -n apt-get install -y chromium; }
    refresh() { apt-get update || sudo -n apt-get update; }
    if ! { install_chromium || { refresh && install_chromium; }; } >/dev/null 2>&1; then
        echo "setup: could not install chromium (apt-get install chromium); the browser test skips"
    fi
fi
# Triton serving. The client library goes in .venv (the `triton` extra). The CPU tritonserver
# comes bundled in the nvidia-pytriton wheel, whose Python-backend stub is built against
# numpy 1 and corrupts every tensor under numpy 2: the served models therefore run in their
# own environment, .venv/triton, with numpy<2 and this project (scripts/serve.sh uses it).
# --no-deps: only the wheel's server binary is used, not its Python API.
"${pip[@]}" -e ".[triton]"
[ -x "$VENV/triton/bin/python" ] || "$VENV/bin/python" -m venv "$VENV/triton"
tpip=("$VENV/triton/bin/python" -m pip install --quiet --disable-pip-version-check)
"${tpip[@]}" -e ".[openvino]" "numpy<2"
"${tpip[@]}" --no-deps "nvidia-pytriton==0.7.0"
# The tests' oracle for MusCALL's tokenizer: transformers 4's slow (pure Python)
# CLIPTokenizer, which MusCALL runs and transformers 5 no longer has. Its own environment
# (transformers 4 needs huggingface-hub < 1); no torch, no model code, only the tokenizer.
[ -x "$VENV/clip-slow/bin/python" ] || "$VENV/bin/python" -m venv "$VENV/clip-slow"
"$VENV/clip-slow/bin/python" -m pip install --quiet --disable-pip-version-check \
    "transformers>=4.40,<5"
echo "$want" > "$STAMP"
echo "setup: .venv ready ($("$VENV/bin/python" --version))"
