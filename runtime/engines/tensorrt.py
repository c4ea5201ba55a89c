"""TensorRT engines (``export/to_tensorrt.py``) behind the session interface
(``runtime.engines.Session``): ``TensorRTSession``.

TensorRT and cuda-python are imported when a session is created, never by ``import runtime``.
What can be checked without a GPU (the feed against the engine's optimisation profile, the
dtype conversion) is in plain functions; the part that needs TensorRT is ``TensorRTSession``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from runtime.errors import InputError, ModelFolderError, TtmrError, missing_dependency

INSTALL_HINT = (
    "use NVIDIA's container nvcr.io/nvidia/tensorrt:<yy.mm>-py3, or pip install "
    "tensorrt-cu13 (tensorrt-cu12 for CUDA 12) --extra-index-url https://pypi.nvidia.com"
)
NVIDIA_INDEX = "--extra-index-url https://pypi.nvidia.com"

Shape = tuple[int, ...]
# Per input: the (min, opt, max) shapes of the engine's optimisation profile.
Profile = Mapping[str, tuple[Shape, Shape, Shape]]


def check_feed(feed: Mapping[str, np.ndarray], profile: Profile) -> None:
    """Refuses a feed the engine was not built for, with an ``InputError`` that names the
    limit and how to rebuild, before TensorRT sees it (its own error would say neither).
    Dimension 0 is the batch (``--max-batch``); the other dimensions a profile leaves
    dynamic are the text engines' token length (``--max-tokens``)."""
    if set(feed) != set(profile):
        raise InputError(f"the engine takes inputs {sorted(profile)}, got {sorted(feed)}")
    for name, (low, _, high) in profile.items():
        shape = np.shape(feed[name])
        if len(shape) != len(high):
            raise InputError(f"{name}: the engine takes {len(high)}-d input, got shape {shape}")
        for axis, (size, least, most) in enumerate(zip(shape, low, high, strict=True)):
            if least <= size <= most:
                continue
            if least == most:
                raise InputError(f"{name}: dimension {axis} is {size}, the engine takes {most}")
            if size < least:
                raise InputError(f"{name}: dimension {axis} is {size}, below the minimum {least}")
            if axis == 0:
                raise InputError(
                    f"{name}: {size} rows is more than this engine's maximum batch of {most}: "
                    f"use a batch_size of at most {most}, or rebuild the engine with "
                    f"export/to_tensorrt.py --max-batch {size}"
                )
            raise InputError(
                f"{name}: {size} tokens is more than this engine's maximum of {most}: "
                f"rebuild the engine with export/to_tensorrt.py --max-tokens {size}"
            )


def engine_array(name: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` as a C-contiguous array of the engine tensor's dtype. TensorRT may keep an
    int64 input as int32 (token and track ids fit); only same-kind casts are made, anything
    else is refused as onnxruntime would."""
    array = np.asarray(array)
    if array.dtype != dtype and not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise InputError(f"{name}: the engine takes {np.dtype(dtype)}, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=dtype)


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python before 12.8
    return cudart


def _import_tensorrt():
    """``(tensorrt, cudart)``, or a ``MissingDependency`` that says what to install."""
    try:
        import tensorrt
    except ImportError:
        raise missing_dependency(
            "TensorRT",
            extra="tensorrt",
            needed_for="running TensorRT engines",
            pip_options=NVIDIA_INDEX,
            alternative="use NVIDIA's container nvcr.io/nvidia/tensorrt:<yy.mm>-py3",
        ) from None
    try:
        cudart = _import_cudart()
    except ImportError:
        raise missing_dependency(
            "cuda-python",
            extra="tensorrt",
            needed_for="running TensorRT engines",
            pip_options=NVIDIA_INDEX,
        ) from None
    return tensorrt, cudart


def device_name() -> str | None:
    """The current GPU's name, for the manifest; ``None`` without cuda-python or a GPU."""
    try:
        cudart = _import_cudart()
    except ImportError:
        return None
    err, device = cudart.cudaGetDevice()
    if err != cudart.cudaError_t.cudaSuccess:
        return None
    err, properties = cudart.cudaGetDeviceProperties(device)
    if err != cudart.cudaError_t.cudaSuccess:
        return None
    name = properties.name
    return name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)


def _checked(cudart, result: tuple):
    """The value of a cuda-python call (``(error, value...)``), raising on an error."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA call failed: {err}")
    return values[0] if values else None


def _release(cudart, buffers: dict[str, tuple[int, int]], stream) -> None:
    for pointer, _ in buffers.values():
        cudart.cudaFree(pointer)
    buffers.clear()
    cudart.cudaStreamDestroy(stream)


class TensorRTSession:
    """A deserialized TensorRT engine with one execution context and its own CUDA stream (a
    ``runtime.engines.Session``).

    ``run`` uploads the feed into device buffers that only ever grow (reused across calls),
    runs the engine on the session's stream, copies back only the requested outputs and
    synchronises once. A feed outside the engine's optimisation profile raises
    ``runtime.InputError`` before anything runs. Calls from several threads run one at a
    time: they share the context, the stream and the buffers.
    """

    def __init__(self, path: str | os.PathLike):
        trt, cudart = _import_tensorrt()
        self._cudart = cudart
        self._stream = _checked(cudart, cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity)
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _release, cudart, self._buffers, self._stream)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise ModelFolderError(
                f"{path}: TensorRT could not load this engine (built by another TensorRT "
                "version or for another GPU?); rebuild it with export/to_tensorrt.py"
            )
        self.context = self.engine.create_execution_context()
        self.path, self.providers = Path(path), ["TensorRT"]
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.engine.get_tensor_mode
        self.input_names = [n for n in names if mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.profile = {
            name: tuple(tuple(dims) for dims in self.engine.get_tensor_profile_shape(name, 0))
            for name in self.input_names
        }

    def _device_buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self._buffers.get(name, (0, 0))
        if capacity < nbytes:
            if pointer:
                _checked(self._cudart, self._cudart.cudaFree(pointer))
            pointer = _checked(self._cudart, self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The requested outputs for one feed, as onnxruntime's ``InferenceSession.run``."""
        with self._lock:
            return self._run(output_names, feed)

    def _run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self._finalizer.alive:  # its buffers and stream are freed
            raise TtmrError(f"{self.path}: the session is closed")
        unknown = [name for name in output_names if name not in self.output_names]
        if unknown:
            raise InputError(f"unknown outputs {unknown}: the engine has {self.output_names}")
        check_feed(feed, self.profile)
        cudart, stream = self._cudart, self._stream
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        arrays = {n: engine_array(n, feed[n], self.dtypes[n]) for n in self.input_names}
        for name, array in arrays.items():
            if not self.context.set_input_shape(name, array.shape):
                raise RuntimeError(f"TensorRT refused the shape {array.shape} for {name}")
            pointer = self._device_buffer(name, array.nbytes)
            _checked(
                cudart,
                cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, to_device, stream),
            )
            self.context.set_tensor_address(name, pointer)
        shapes = {name: tuple(self.context.get_tensor_shape(name)) for name in self.output_names}
        for name, shape in shapes.items():
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            self.context.set_tensor_address(name, self._device_buffer(name, nbytes))
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT could not run the engine (its log above says why)")
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        results = []
        for name in output_names:
            host = np.empty(shapes[name], self.dtypes[name])
            pointer = self._buffers[name][0]
            _checked(
                cudart,
                cudart.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, to_host, stream),
            )
            results.append(host)
        _checked(cudart, cudart.cudaStreamSynchronize(stream))
        return results

    def close(self) -> None:
        """Frees the device buffers and the stream now (else when the session is collected)."""
        self._finalizer()
