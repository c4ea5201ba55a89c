#!/usr/bin/env bash
# Serve a Triton model repository on CPU with the tritonserver binary bundled in the
# nvidia-pytriton wheel, in the foreground.
#
#   scripts/serve.sh [REPO] [extra tritonserver arguments]
#
# REPO defaults to triton_repo, what export/to_triton.py writes by default.
#
# Environment:
#   HTTP_PORT, GRPC_PORT, METRICS_PORT   8000/8001/8002
#   BIND_ADDRESS      127.0.0.1: this machine only. Another address (0.0.0.0: every
#                     interface) exposes the server, with a warning: the bundled Triton 2.51
#                     predates NVIDIA's August 2025 security fixes (25.07 / 2.60).
#   TRITON_ADMIN_KEY  the value of the `admin-key` header that the shared-memory, logging,
#                     trace, statistics and model-repository APIs need (HTTP and gRPC).
#                     Unset: a random key per start, written to a file only the owner can
#                     read ($TRITON_STATE_DIR, default $XDG_RUNTIME_DIR or ~/.cache, then
#                     ttmr-triton/admin-key-HTTP_PORT), named on stderr, removed on exit.
#   PYTHON            the environment that holds the wheel and that the Python-backend
#                     models run in (default .venv/triton/bin/python, made by
#                     scripts/setup.sh with numpy<2: the wheel's backend stub is built
#                     against numpy 1 and corrupts every tensor under numpy 2).
# SIGTERM or Ctrl-C stops the server cleanly (it finishes in-flight requests and stops its
# Python-backend stubs). serve.sh stays the server's parent: it forwards the signal, waits,
# and then kills what is left of the server's process group and removes the shared-memory
# regions nothing maps (scripts/reap_triton.py), as it also does before starting, for a
# server of this repository that was killed with its stubs still running.
set -euo pipefail

repo=triton_repo
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then  # a first argument that is not an option
    repo=$1
    shift
fi
root=$(cd "$(dirname "$0")/.." && pwd)
address=${BIND_ADDRESS:-127.0.0.1}
case $address in
127.* | ::1 | localhost) ;;
*)
    echo "serve.sh: WARNING: serving on $address, reachable from other machines. Triton 2.51" \
        "(this wheel's) predates NVIDIA's August 2025 security fixes (Triton 25.07 / 2.60):" \
        "expose it only on a network you trust, or serve with a fixed Triton instead." >&2
    ;;
esac
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

# The administrative APIs need the key; health, metadata, model-config and inference (what
# clients use) do not. tritonserver takes it on its command line: local users can read it
# there (ps), so it guards against the network, not against other users of this machine.
http_port=${HTTP_PORT:-8000}
key_file=
key=${TRITON_ADMIN_KEY:-}
if [ -z "$key" ]; then
    state=${TRITON_STATE_DIR:-${XDG_RUNTIME_DIR:-${HOME:-/tmp}/.cache}/ttmr-triton}
    (umask 077 && mkdir -p "$state")
    key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    key_file=$state/admin-key-$http_port
    (umask 077 && printf '%s\n' "$key" >"$key_file")
    echo "serve.sh: the admin-key header for the restricted APIs is in $key_file" >&2
fi
[[ $key =~ ^[A-Za-z0-9._~-]+$ ]] || {
    echo "serve.sh: TRITON_ADMIN_KEY may hold only letters, digits and . _ ~ -" >&2
    exit 2
}
restricted=shared-memory,logging,trace,statistics,model-repository:admin-key=$key

# 2.51 has no limit on request bytes (--http-max-input-size came later); the models refuse
# oversized audio requests by their sample count (to_triton.py --max-request-samples).
reap() { "$PYTHON" "$root/scripts/reap_triton.py" "$repo"; }
reap
# Its own session: a Ctrl-C reaches it once, through serve.sh, and its process group holds
# its stubs, to be killed together if it dies.
setsid "$server/bin/tritonserver" \
    --model-repository "$repo" \
    --backend-directory "$backends" \
    --disable-auto-complete-config \
    --http-address "$address" --http-port "$http_port" \
    --grpc-address "$address" --grpc-port "${GRPC_PORT:-8001}" \
    --metrics-address "$address" --metrics-port "${METRICS_PORT:-8002}" \
    --http-restricted-api "$restricted" \
    --grpc-restricted-protocol "$restricted" \
    "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM
trap 'kill -INT "$pid" 2>/dev/null || true' INT
status=0
wait "$pid" || status=$?
# A trapped signal ends `wait` early: wait again until the server itself has exited.
while kill -0 "$pid" 2>/dev/null; do
    status=0
    wait "$pid" || status=$?
done
kill -KILL -- "-$pid" 2>/dev/null || true
reap
[ -z "$key_file" ] || rm -f "$key_file"
exit "$status"
