"""``TritonEmbedder``: ``runtime.Embedder``'s interface and results, computed by a Triton
Inference Server that serves a repository written by ``export/to_triton.py``.

Audio items are decoded here (so paths work as with ``Embedder``) and sent one track per
request at their own sample rate; the server resamples, normalises and windows them with
the runtime's own code. Requests are kept in flight together so the server batches them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np

from runtime.audio.reading import AudioItem, decode, describe
from runtime.embedder import check_items, check_space, finish
from runtime.errors import InputError, TritonUnavailable, missing_dependency
from runtime.text import check_texts

# Family-neutral: the same names serve every model family.
AUDIO_MODEL, TEXT_MODEL = "audio_embedding", "text_embedding"
PROTOCOLS = ("http", "grpc")
# The gRPC status of a server that cannot be reached (HTTP raises OSError instead).
UNREACHABLE = "StatusCode.UNAVAILABLE"


def server_address(url: str, protocol: str) -> str:
    """``host:port``, as tritonclient takes it; ``url`` may also carry the protocol's own
    scheme (``http://host:port``, ``grpc://host:port``), which tritonclient would misread."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme != protocol or not parts.netloc or parts.path not in ("", "/"):
        raise InputError(
            f"url {url!r}: expected host:port or {protocol}://host:port for the {protocol} "
            "protocol (no path; TLS is not supported)"
        )
    return parts.netloc


class TritonEmbedder:
    """``Embedder``'s ``embed_audio`` / ``embed_text`` against a Triton server that serves a
    repository written by ``export/to_triton.py``: files are decoded here and sent one track
    per request, with requests kept in flight together so that the server batches them.

    Use it as a context manager, or call ``close()``. One instance may be shared by
    threads: each thread gets its own connection (the HTTP client runs on gevent, whose
    connections work only in the thread that made them), and ``close()`` closes them all.

    Args:
        url: ``host:port`` (8000 is HTTP and 8001 gRPC by default), or
            ``http://host:port`` / ``grpc://host:port`` matching ``protocol``; no path, no
            TLS.
        protocol: ``"http"`` or ``"grpc"``.
        max_in_flight: how many requests are sent ahead of their answers.
        timeout: how long one answer may take, in seconds (a track is one request: an hour
            of audio is minutes of CPU).

    Raises:
        InputError: a malformed ``url``, an unknown ``protocol``, ``max_in_flight`` < 1.
        ImportError: tritonclient is missing (the ``triton`` extra).
        TritonUnavailable: on a call, when the server cannot be reached; the message names
            the URL.
    """

    def __init__(
        self,
        url: str,
        protocol: str = "http",
        max_in_flight: int = 16,
        timeout: float = 600.0,
    ):
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if max_in_flight < 1:
            raise InputError(f"max_in_flight must be at least 1, got {max_in_flight}")
        try:
            if protocol == "http":
                import tritonclient.http as client
            else:
                import tritonclient.grpc as client
        except ImportError:
            raise missing_dependency(
                "tritonclient", extra="triton", needed_for="TritonEmbedder"
            ) from None
        self.url = server_address(url, protocol)
        self.protocol = protocol
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self._api = client
        if protocol == "http":
            self._options = {"concurrency": max_in_flight, "network_timeout": timeout}
        else:
            self._options = {}
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._configs: dict[str, dict] = {}

    @property
    def _client(self):
        """This thread's client, made on its first call."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._api.InferenceServerClient(self.url, **self._options)
            with self._lock:
                self._clients.append(client)
            self._local.client = client
        return client

    def close(self) -> None:
        """Close every thread's connection (call it when no thread is embedding)."""
        with self._lock:
            clients, self._clients = self._clients, []
            self._local = threading.local()
        for client in clients:
            client.close()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Turn the ways a server can be out of reach into TritonUnavailable."""
        try:
            yield
        except OSError as err:  # HTTP: refused, reset, unknown host, timed out
            raise self._unavailable(err) from err
        except self._api.InferenceServerException as err:
            if str(err.status()) == UNREACHABLE:
                raise self._unavailable(err) from err
            raise

    def _unavailable(self, err: Exception) -> TritonUnavailable:
        reason = " ".join(str(err).split())
        return TritonUnavailable(
            f"Triton server {self.protocol}://{self.url} unreachable: {reason}"
        )

    def __enter__(self) -> TritonEmbedder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def config(self, model: str) -> dict:
        """The served model's configuration (JSON form), fetched once."""
        if model not in self._configs:
            with self._reaching():
                if self.protocol == "http":
                    config = self._client.get_model_config(model)
                else:
                    config = self._client.get_model_config(model, as_json=True)["config"]
            self._configs[model] = config
        return self._configs[model]

    def width(self, model: str, space: str) -> int:
        (output,) = [o for o in self.config(model)["output"] if o["name"] == space]
        return int(output["dims"][-1])

    def tensor(self, name: str, array: np.ndarray, datatype: str):
        value = self._api.InferInput(name, list(array.shape), datatype)
        value.set_data_from_numpy(array)
        return value

    def start(self, model: str, inputs: list, space: str) -> Callable[[], np.ndarray]:
        """Send one request; the returned call waits for it and gives the ``space`` output."""
        outputs = [self._api.InferRequestedOutput(space)]
        if self.protocol == "http":
            pending = self._client.async_infer(model, inputs, outputs=outputs)
            return lambda: pending.get_result().as_numpy(space)
        future: Future = Future()

        def done(result, error) -> None:
            if error is None:
                future.set_result(result.as_numpy(space))
            else:
                future.set_exception(error)

        self._client.async_infer(model, inputs, done, outputs=outputs, client_timeout=self.timeout)
        return future.result

    def run(self, jobs: Iterator[tuple[str, object, list]], space: str) -> list[np.ndarray]:
        """Answers of ``(model, item name, inputs)`` jobs, in order, at most ``max_in_flight``
        at a time. An INVALID_ARG answer becomes InputError naming the item."""
        answers: list[np.ndarray] = []
        pending: deque = deque()

        def collect() -> None:
            name, wait = pending.popleft()
            try:
                answers.append(wait())
            except self._api.InferenceServerException as err:
                if str(err.status()) in ("400", "StatusCode.INVALID_ARGUMENT"):
                    raise InputError(f"{name}: the server refused it: {err.message()}") from err
                raise

        with self._reaching():
            for model, name, inputs in jobs:
                if len(pending) == self.max_in_flight:
                    collect()
                pending.append((name, self.start(model, inputs, space)))
            while pending:
                collect()
        return answers

    def embed_audio(
        self,
        items: Iterable[AudioItem],
        sample_rate: int | None = None,
        space: str = "joint",
        normalize: bool = False,
    ) -> np.ndarray:
        """Embed audio files or arrays on the server, one row per item.

        Every item is decoded and checked (rate, the server's sample and length limits)
        before anything is sent.

        Args:
            items: paths, or numpy arrays (mono ``[n]`` or channels-last ``[n, c]``).
            sample_rate: the arrays' sample rate; not used for paths.
            space: ``"joint"`` (shared with text) or ``"encoder"`` (before the projection).
            normalize: L2-normalise each row.

        Returns:
            ``[len(items), width]`` float32.

        Raises:
            InputError: a bad item, named by index and path, or the server's refusal of it.
        """
        check_space(space)
        items = check_items(items)
        limits = self.config(AUDIO_MODEL)["parameters"]
        max_seconds = float(limits["max_audio_seconds"]["string_value"])
        max_samples = int(limits.get("max_request_samples", {}).get("string_value", 0))
        tracks = []
        for index, item in enumerate(items):
            samples, rate = decode(index, item, sample_rate)  # refuses rates out of range
            name = describe(index, item)
            if max_samples and len(samples) > max_samples:
                raise InputError(
                    f"{name}: {len(samples)} samples, over the server's limit of {max_samples} "
                    "samples per request (set when the repository is written: "
                    "to_triton.py --max-request-samples)"
                )
            if len(samples) / rate > max_seconds:
                raise InputError(
                    f"{name}: {len(samples) / rate:.1f} s of audio, over the server's limit of "
                    f"{max_seconds:g} s (set when the repository is written: "
                    "to_triton.py --max-audio-seconds)"
                )
            tracks.append((name, samples, rate))
        jobs = (
            (
                AUDIO_MODEL,
                name,
                [
                    self.tensor("waveform", samples[None], "FP32"),
                    self.tensor("sample_rate", np.array([[rate]], np.int32), "INT32"),
                ],
            )
            for name, samples, rate in tracks
        )
        rows = self.run(jobs, space)
        if not rows:
            return np.zeros((0, self.width(AUDIO_MODEL, space)), np.float32)
        return finish(np.concatenate(rows), normalize)

    def embed_text(
        self, texts: Iterable[str], space: str = "joint", normalize: bool = False
    ) -> np.ndarray:
        """Embed sentences on the server, one row per sentence.

        Args:
            texts: a list of strings (longer ones are truncated to the model's token limit).
            space: ``"joint"`` or ``"encoder"``.
            normalize: L2-normalise each row.

        Returns:
            ``[len(texts), width]`` float32.

        Raises:
            InputError: a non-string or invalid-Unicode text, named by index.
        """
        check_space(space)
        texts = check_texts(texts)
        size = int(self.config(TEXT_MODEL)["max_batch_size"])
        batches = [
            (start, encoded(texts[start : start + size])) for start in range(0, len(texts), size)
        ]
        jobs = (
            (
                TEXT_MODEL,
                f"items {start}..{start + len(batch) - 1}",
                [self.tensor("text", batch, "BYTES")],
            )
            for start, batch in batches
        )
        rows = self.run(jobs, space)
        if not rows:
            return np.zeros((0, self.width(TEXT_MODEL, space)), np.float32)
        return finish(np.concatenate(rows), normalize)


def encoded(texts: list[str]) -> np.ndarray:
    """``[n, 1]`` UTF-8 bytes, the server's ``text`` input (``check_texts`` made sure every
    text encodes)."""
    return np.array([[text.encode("utf-8")] for text in texts], dtype=np.object_)
