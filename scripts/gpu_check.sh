#!/usr/bin/env bash
# The GPU run in one command (docs/gpu.md): join and check the carried wheels, install them,
# show the GPU and what onnxruntime sees, export (or reuse) the full-size demo with FP16
# graphs, run the GPU tests, time the GPU rows of scripts/bench.py, and write the table and
# the logs to OUT. Stops by itself at --limit seconds, keeping what it measured. Without a
# GPU it says so, still runs every step it can, and exits 0.
#
#   bash scripts/gpu_check.sh OUT [--limit SECONDS] [--model-dir DIR] [--quick]
#
# --model-dir: a model folder to bench instead of the demo (the tests then use their own);
# --quick: small batches and few latency runs in the bench (the test of this script).
set -uo pipefail  # no -e: a failed step is logged and the steps after it still run
cd "$(dirname "$0")/.."

usage="usage: gpu_check.sh OUT [--limit SECONDS] [--model-dir DIR] [--quick]"
out=${1:?$usage}
shift
limit=450  # 7.5 minutes: the whole run within 8 on the lent machine
model_dir=
sizes=()
while [ $# -gt 0 ]; do
    case $1 in
        --limit) limit=$2; shift 2 ;;
        --model-dir) model_dir=$2; shift 2 ;;
        --quick) sizes=(--batches 1,4 --latency-runs 10); shift ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee "$out/gpu_check.log") 2>&1
started=$(date +%s)
stop_at=$((started + limit))
left() { echo $((stop_at - $(date +%s))); }
secs() { local s; s=$(left); echo $((s > 1 ? s : 1)); }  # for timeout, where 0 means never
step() { echo; echo "== $* ($(left) s of ${limit} left)"; }
failed=()

# .venv here; on the lent machine, its python3 (the one that holds torch).
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # nothing is ever fetched from a hub

step "GPU"
gpu=
if timeout 30 nvidia-smi >"$out/nvidia-smi.txt" 2>&1 && grep -q "MiB" "$out/nvidia-smi.txt"; then
    gpu=1
    cat "$out/nvidia-smi.txt"
else
    echo "gpu_check: no GPU: nvidia-smi is missing or sees no device; the GPU rows are not run"
fi

step "wheels"
site=.gpu/site
if [ -f .gpu/pieces/pieces.sha256 ]; then
    if "$py" scripts/gpu_pieces.py join .gpu/pieces .gpu/wheels; then
        if [ -n "$gpu" ]; then
            rm -rf "$site"
            if "$py" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
                --no-compile --no-cache-dir --target "$site" .gpu/wheels/*.whl; then
                # First on the path: the carried onnxruntime-gpu over the image's CPU one,
                # which stays installed.
                export PYTHONPATH=$PWD/$site:$PYTHONPATH
            else
                failed+=("pip install")
            fi
        else
            echo "gpu_check: no GPU: the wheels are joined and checked, not installed"
        fi
    else
        failed+=("joining the pieces")
    fi
else
    echo "gpu_check: no .gpu/pieces (scripts/gpu_pack.sh makes them): the installed packages"
fi

step "versions"
"$py" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE "^(nvidia-|torch |onnx)"
"$py" - <<'EOF'
import importlib.util

if importlib.util.find_spec("torch"):
    import torch

    cudnn = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}, device {device}")
EOF

# onnxruntime in a process without torch, as each bench row is: the carried one, its build,
# its providers, and a one-node graph on CUDA.
probe() {
    "$py" - "$PWD/$site" "$gpu" <<'EOF'
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from runtime.engines.onnxruntime import cuda_library_folders, cuda_problem

site, gpu = sys.argv[1], sys.argv[2]
built = getattr(ort, "cuda_version", "") or "none"
print(f"onnxruntime {ort.__version__} at {Path(ort.__file__).parent}, built for CUDA {built}")
print(f"providers: {ort.get_available_providers()}")
print(f"CUDA library folders: {[str(f) for f in cuda_library_folders(built)]}")
if gpu and Path(site).is_dir() and not ort.__file__.startswith(site):
    sys.exit(f"gpu_check: this onnxruntime is not the carried one in {site}")
value = helper.make_tensor_value_info
node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], [0.1] * 36)
graph = helper.make_graph(
    [node],
    "probe",
    [value("x", TensorProto.FLOAT, [1, 1, 8, 8])],
    [value("y", TensorProto.FLOAT, None)],
    [weight],
)
with tempfile.TemporaryDirectory() as scratch:
    path = Path(scratch) / "probe.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    problem = cuda_problem(path)
assert "torch" not in sys.modules
print(f"CUDA probe: {problem or 'a Conv ran on CUDAExecutionProvider'}")
sys.exit(1 if problem and gpu else 0)
EOF
}
step "onnxruntime, the runtime's own library preload alone"
probe || echo "gpu_check: the CUDA probe failed with the loader path as it was"
# Then NVIDIA's library folders appended to the loader path, for every process after this.
folders=$("$py" -c "from runtime.engines.onnxruntime import cuda_library_folders as f
import onnxruntime as o; print(':'.join(map(str, f(getattr(o, 'cuda_version', '') or '13'))))")
if [ -n "$folders" ]; then
    export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$folders
    step "onnxruntime, LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    probe || failed+=("the CUDA probe")
fi

step "model"
demo=
if [ -z "$model_dir" ]; then
    model_dir=models/gpu-demo
    demo=1
    if "$py" -c "import sys; from runtime.manifest import read_manifest as r
sys.exit(0 if r('$model_dir').graph_files('fp16') else 1)" 2>/dev/null; then
        echo "gpu_check: reusing the demo exported in $model_dir"
    else
        rm -rf "$model_dir"
        timeout "$(secs)" "$py" export/to_onnx.py --demo --fp16 --output "$model_dir" \
            >"$out/export.log" 2>&1 || failed+=("the demo export")
        tail -n 15 "$out/export.log"
    fi
fi
echo "model: $model_dir"

step "GPU tests"
# What is left but four minutes for the bench with a GPU (half of it without), and never
# less than half a minute.
reserve=$(($(left) / 2))
[ -n "$gpu" ] && reserve=240
budget=$(($(left) - reserve))
[ "$budget" -lt 30 ] && budget=30
(
    [ -n "$gpu" ] && export TTMR_EXPECT_GPU=1  # a CUDA test that cannot run fails
    [ -n "$demo" ] && export TTMR_TEST_DEMO_DIR=$PWD/$model_dir
    timeout "$budget" "$py" -m pytest tests/runtime/engines/test_gpu.py -q -rA \
        -p no:cacheprovider 2>&1
) | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
summary=$(grep -E "passed|failed|error|skipped" "$out/tests.log" | tail -n 1)
[ "$tests" -eq 124 ] && summary="stopped at the time limit ($budget s)"
[ "$tests" -ne 0 ] && failed+=("the GPU tests")

step "bench"
# The GPU rows first, should the time run out, then the CPU reference (every row's cosine
# is to its embeddings) and the CPU runtime.
rows="PyTorch eager CUDA fp32,PyTorch eager CUDA fp16 autocast,ORT CUDA fp32,ORT CUDA fp16"
rows+=",PyTorch eager CPU fp32,ORT CPU fp32"
if [ -z "$gpu" ] && [ ${#sizes[@]} -eq 0 ]; then
    echo "gpu_check: no GPU: the CPU rows with small batches and few latency runs (--quick)"
    sizes=(--batches 1,4 --latency-runs 10)
fi
bench() {  # bench JSON ROWS STOP_AT SEARCH
    local json=$1 rows=$2 until=$3 grace
    grace=$((until - $(date +%s) + 30))  # past its own stop, the bench is ended
    TTMR_CUDNN_CONV_ALGO_SEARCH=$4 timeout $((grace > 1 ? grace : 1)) \
        "$py" scripts/bench.py --model-dir "$model_dir" --sections backends \
        --threads "$(nproc)" --rows "$rows" --stop-at "$until" --json "$json" "${sizes[@]}" \
        || failed+=("the bench ($4)")
}
if [ -f "$model_dir/manifest.json" ]; then
    # The last 15 seconds are kept for the table; with a GPU, a minute more for
    # onnxruntime's CUDA rows with EXHAUSTIVE search.
    keep=15
    [ -n "$gpu" ] && keep=75
    bench "$out/bench.json" "$rows" $((stop_at - keep)) HEURISTIC
    if [ -n "$gpu" ]; then
        bench "$out/bench_exhaustive.json" "ORT CUDA fp32,ORT CUDA fp16" $((stop_at - 15)) \
            EXHAUSTIVE
    fi
else
    echo "gpu_check: no model in $model_dir: no bench"
fi

step "table"
wall=$(($(date +%s) - started))
notes=(
    --note "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; GPU: $(
        [ -n "$gpu" ] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader \
            || echo 'no GPU')"
    --note "model: $model_dir"
    --note "GPU tests (tests/runtime/engines/test_gpu.py): ${summary:-not run}"
    --note "wall time: $wall s of a $limit-s limit"
    --note "failed steps: ${failed[*]:-none}"
)
[ -z "$gpu" ] && notes+=(--no-gpu)
"$py" scripts/gpu_report.py "$out/table.md" --bench "$out/bench.json" \
    --exhaustive "$out/bench_exhaustive.json" "${notes[@]}"

echo
if [ -z "$gpu" ]; then
    echo "gpu_check: no GPU on this machine; CPU rows only, table in $out/table.md ($wall s)"
    exit 0
fi
echo "gpu_check: table in $out/table.md ($wall s); failed steps: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
