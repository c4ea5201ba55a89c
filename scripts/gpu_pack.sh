#!/usr/bin/env bash
# Download (from PyPI, here) the wheels the lent GPU machine lacks for the GPU rows, for its
# Python 3.12 on manylinux x86_64, and cut them into pieces of at most 60 MB with their
# sha256 sums under .gpu/pieces (ignored), one piece per transfer (docs/gpu.md).
# Idempotent: wheels already downloaded are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_GPU_VERSION=${ORT_GPU_VERSION:-1.31.1}  # built for CUDA 13.0 and cuDNN 9 on PyPI
PIECE_BYTES=${PIECE_BYTES:-60000000}
WHEELS=${WHEELS:-.gpu/wheels}
PIECES=${PIECES:-.gpu/pieces}
py=${PYTHON:-.venv/bin/python}

# The image has torch (cu130) with NVIDIA's CUDA 13 and cuDNN wheels, onnx, CPU onnxruntime
# and onnxruntime-gpu's own needs (flatbuffers, numpy, packaging, protobuf, sympy). It lacks
# the runtime's audio reading and the reference's mel (librosa) with their needs: these at
# the versions .venv is tested with.
SMALL_WHEELS=(
    soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12
    librosa==0.11.0 decorator==5.3.2 audioread==3.1.0 pooch==1.9.0 platformdirs==4.14.9
)
target=(--python-version 3.12 --implementation cp --only-binary=:all: --no-deps)
# manylinux_2_28 is the GPU wheel's tag; the small wheels carry older ones (each named: pip
# matches a given platform exactly).
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64; do
    target+=(--platform "$tag")
done
wanted=("onnxruntime-gpu==$ORT_GPU_VERSION" "${SMALL_WHEELS[@]}")
mkdir -p "$WHEELS"
# Wheels of other versions (an earlier ORT_GPU_VERSION) would travel too: removed.
for wheel in "$WHEELS"/*.whl; do
    [ -e "$wheel" ] || continue
    keep=
    for pin in "${wanted[@]}"; do
        prefix=$(echo "${pin%%==*}" | tr 'A-Z-' 'a-z_')-${pin##*==}-
        case $(basename "$wheel" | tr 'A-Z' 'a-z') in "$prefix"*) keep=1 ;; esac
    done
    [ -n "$keep" ] || { echo "gpu_pack: removing $wheel (not pinned)"; rm -f "$wheel"; }
done
"$py" -m pip download --quiet --disable-pip-version-check "${target[@]}" -d "$WHEELS" \
    "${wanted[@]}"

gpu_wheel=$(ls "$WHEELS"/onnxruntime_gpu-"$ORT_GPU_VERSION"-*.whl)
# The CUDA and cuDNN the wheel was built for, to set against the image's nvidia-* wheels.
unzip -p "$gpu_wheel" onnxruntime/capi/build_and_package_info.py | sed 's/^/gpu_pack: built: /'
unzip -p "$gpu_wheel" '*/METADATA' | grep '^Requires-Dist' | sed 's/^/gpu_pack: /'

"$py" scripts/gpu_pieces.py split "$WHEELS" "$PIECES" --max-bytes "$PIECE_BYTES"
echo "gpu_pack: $(find "$PIECES" -type f | wc -l) files in $PIECES, $(du -sh "$PIECES" | cut -f1)"
