#!/usr/bin/env bash
# Serve a Triton model repository on CPU with the tritonserver binary bundled in the
# nvidia-pytriton wheel, in the foreground.
#
#   scripts/serve.sh REPO [extra tritonserver arguments]
#
# Environment: HTTP_PORT, GRPC_PORT, METRICS_PORT (8000/8001/8002), BIND_ADDRESS (0.0.0.0),
# PYTHON: the environment that holds the wheel and that the Python-backend models run in
# (default .venv/triton/bin/python, made by scripts/setup.sh with numpy<2: the wheel's
# backend stub is built against numpy 1 and corrupts every tensor under numpy 2).
# SIGTERM or Ctrl-C stops the server cleanly: it is exec'd, so the signal reaches it directly,
# it finishes in-flight requests and stops its Python-backend processes.
set -euo pipefail

repo=${1:?usage: scripts/serve.sh REPO [tritonserver arguments]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$root/.venv/triton/bin/python}
[ -d "$repo" ] || { echo "serve.sh: no model repository at $repo" >&2; exit 2; }
[ -x "$PYTHON" ] || { echo "serve.sh: no Python at $PYTHON (run scripts/setup.sh)" >&2; exit 2; }

# Where the wheel put the server, which Python the stub must embed and where its libpython
# lives, and numpy's major version. find_spec does not import pytriton.
probe='
import importlib.metadata, importlib.util, sys, sysconfig
spec = importlib.util.find_spec("pytriton")
home = list(spec.submodule_search_locations)[0] if spec else "-"
numpy = importlib.metadata.version("numpy").split(".")[0]
print(home, "%d.%d" % sys.version_info[:2], sysconfig.get_config_var("LIBDIR"), numpy)'
read -r pytriton pyver libdir numpy_major < <("$PYTHON" -c "$probe")
[ "$numpy_major" -lt 2 ] || {
    echo "serve.sh: $PYTHON has numpy 2; the bundled backend stub needs numpy<2" >&2
    exit 2
}
[ "$pytriton" != "-" ] || {
    echo "serve.sh: nvidia-pytriton is not installed for $PYTHON (run scripts/setup.sh)" >&2
    exit 2
}
server=$pytriton/tritonserver
backends=$server/backends
stub=$server/python_backend_stubs/$pyver/triton_python_backend_stub
[ -x "$stub" ] || { echo "serve.sh: the wheel has no Python $pyver backend stub" >&2; exit 2; }
# The Python backend runs the stub found next to its library: put the one for this Python there.
cmp -s "$stub" "$backends/python/triton_python_backend_stub" ||
    cp "$stub" "$backends/python/triton_python_backend_stub"

# The stub embeds libpython, which takes its sys.prefix from the first `python3` on PATH:
# putting this environment's bin first makes the models see its packages (a venv's
# pyvenv.cfg is honoured). LIBDIR first makes it load this Python's own libpython.
PATH="$(dirname "$PYTHON"):$PATH"
LD_LIBRARY_PATH="$pytriton/../nvidia_pytriton.libs:$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH LD_LIBRARY_PATH

address=${BIND_ADDRESS:-0.0.0.0}
exec "$server/bin/tritonserver" \
    --model-repository "$repo" \
    --backend-directory "$backends" \
    --disable-auto-complete-config \
    --http-address "$address" --http-port "${HTTP_PORT:-8000}" \
    --grpc-address "$address" --grpc-port "${GRPC_PORT:-8001}" \
    --metrics-address "$address" --metrics-port "${METRICS_PORT:-8002}" \
    "$@"
