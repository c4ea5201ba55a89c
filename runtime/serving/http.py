"""``ttmr serve``: embeddings and catalog search over HTTP, and a page to search and listen.

``create_app(model_dir, catalog)`` is an ASGI app (FastAPI) for uvicorn or gunicorn; the
``serve`` extra installs what it needs. Text and audio go through one ``Gatherer``, so the
sentences and windows of concurrent requests share graph calls. Only rows of the catalog are
served: a track is named by its id (``track_id``), never by a path from the request. Every
bad request is a 4xx JSON error ``{"error": {"message", "type"}}`` naming the problem."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import json
import mimetypes
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import prometheus_client
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from runtime.audio.reading import Track
from runtime.catalog.store import Catalog, Hit, ModelIdentity, Row, readable
from runtime.embedder import SPACES, Embedder, finish
from runtime.errors import InputError
from runtime.serving.gather import AudioRows, Busy, Gatherer
from runtime.text import check_texts

# Paths anyone may fetch without the key: probes and the page (its API calls send the key).
OPEN_PATHS = ("/healthz", "/", "/page/app.js", "/page/style.css")
KEY_COOKIE = "ttmr_key"
MAX_TEXT_CHARS = 10_000  # per sentence; the tokenizer truncates far sooner
MAX_K = 1000
# Content types of a raw upload body → a file suffix (PyAV probes the content anyway).
UPLOAD_SUFFIXES = {
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/webm": ".webm",
}
# Audio types Python's mimetypes lacks or gets wrong for players; the rest come from it.
AUDIO_TYPES = {
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
}


@dataclass(frozen=True)
class Limits:
    """What one request may ask: bytes uploaded, seconds of audio per file, items (files or
    sentences), and how many requests may wait for the model at once (then 429)."""

    max_upload_bytes: int = 200 * 1024 * 1024
    max_audio_seconds: float = 3600.0
    max_items: int = 64
    max_pending: int = 256
    batch_wait: float = 0.05


class Problem(Exception):
    """A bad request: its status and the message the client gets."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}


def error_body(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def model_title(model: Embedder) -> str:
    """The model folder's name, marked when its weights are the random demo ones."""
    demo = " (demo: random weights)" if model.manifest.random_weights else ""
    return f"{model.model_dir.resolve().name}{demo}"


class Tracks:
    """The catalog's rows by id, one LanceDB query at a time."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.lock = threading.Lock()

    def row(self, ident: str) -> Row:
        with self.lock:
            self.catalog.refresh()  # rows another process (ttmr index) added since
            try:
                return self.catalog.track(ident)
            except InputError:  # not an id, or none of the catalog's
                raise Problem(
                    404, f"no track with id {ident!r} in the catalog", "not_found"
                ) from None

    def get(self, ident: str) -> tuple[str, float]:
        row = self.row(ident)
        return row.path, row.duration

    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        with self.lock:
            return self.catalog.nearest(query, k)

    def vector(self, ident: str) -> np.ndarray:
        """The stored row of a track ("more like this")."""
        return self.row(ident).vector


class Metrics:
    """Prometheus metrics of one app (its own registry, so apps in one process never mix)."""

    def __init__(self, gatherer_depth):
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "ttmr_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = prometheus_client.Histogram(
            "ttmr_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.batch_rows = prometheus_client.Histogram(
            "ttmr_batch_rows",
            "sentences or windows per gathered model call",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.batch_requests = prometheus_client.Histogram(
            "ttmr_batch_requests",
            "requests per gathered model call",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        depth = prometheus_client.Gauge(
            "ttmr_queue_depth", "requests waiting for the model", registry=self.registry
        )
        depth.set_function(gatherer_depth)

    def batch(self, kind: str, requests: int, rows: int) -> None:
        self.batch_rows.labels(kind).observe(rows)
        self.batch_requests.labels(kind).observe(requests)


class Guard:
    """ASGI middleware: the API key (Bearer token, or the page's cookie), the upload size,
    and each request's count, latency and status."""

    def __init__(self, app, api_key: str | None, max_bytes: int, metrics: Metrics):
        self.app, self.api_key, self.max_bytes, self.metrics = app, api_key, max_bytes, metrics

    def authorised(self, scope) -> bool:
        if self.api_key is None or scope["path"] in OPEN_PATHS:
            return True
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:], self.api_key):
            return True
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            # The page writes the key URI-encoded (a base64 key's "+", "/" and "=").
            if name == KEY_COOKIE and hmac.compare_digest(unquote(value), self.api_key):
                return True
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if not self.authorised(scope):
                response = error_body(401, "missing or wrong API key (Authorization: Bearer KEY)")
                response.headers["WWW-Authenticate"] = "Bearer"
                return await response(scope, receive, sending)
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > self.max_bytes:
                return await self.too_large()(scope, receive, sending)
            await self.app(scope, self.limited(receive), sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], name, str(status[0])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)

    def too_large(self) -> JSONResponse:
        return error_body(413, f"the upload is larger than {self.max_bytes // 2**20} MB")

    def limited(self, receive):
        """``receive``, raising ``Problem`` (413) once the body passes the limit."""
        seen = 0

        async def counting():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise Problem(413, f"the upload is larger than {self.max_bytes // 2**20} MB")
            return message

        return counting


def parse_space(value: object) -> str:
    if value is None:
        return "joint"
    if value not in SPACES:
        raise Problem(400, f"space must be one of {list(SPACES)}, got {value!r}")
    return value


def parse_flag(value: object, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no", ""):
        return value.lower() in ("1", "true", "yes")
    raise Problem(400, f"{name} must be true or false, got {value!r}")


def parse_k(value: object) -> int:
    try:
        k = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        k = None
    if k is None or not 1 <= k <= MAX_K:
        raise Problem(400, f"k must be a whole number from 1 to {MAX_K}, got {value!r}")
    return k


async def json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Problem(400, f"malformed JSON body: {err}") from None
    if not isinstance(body, dict):
        raise Problem(400, f"the JSON body must be an object, got {type(body).__name__}")
    return body


def check_sentences(given: object, limits: Limits) -> list[str]:
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts:
        raise Problem(400, "input must be a non-empty string or a non-empty list of strings")
    if len(texts) > limits.max_items:
        raise Problem(413, f"{len(texts)} sentences are more than {limits.max_items} per request")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise Problem(400, f"input {index}: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise Problem(400, f"input {index}: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise Problem(
                413, f"input {index}: {len(text)} characters are more than {MAX_TEXT_CHARS}"
            )
    # Here, not in the gathered call: one request's bad text must not fail the others'.
    return check_texts(texts)


def rows_json(rows: np.ndarray) -> list[list[float]]:
    return rows.astype(float).tolist()


class Service:
    """What the endpoints share: the model, its gatherer, the catalog and the limits."""

    def __init__(self, model: Embedder, catalog: Catalog | None, limits: Limits):
        self.model, self.limits = model, limits
        self.identity = ModelIdentity.of_model(model)
        self.tracks = Tracks(catalog) if catalog is not None else None
        self.metrics = Metrics(lambda: self.gatherer.pending() if self.gatherer else 0)
        self.gatherer: Gatherer | None = None
        steps = model.manifest.audio.preprocessing
        self.window_seconds = steps.window_samples / steps.sample_rate

    def start(self) -> None:
        """Open the graphs before the first request (so it is not the one that waits)."""
        self.model.load_text()
        self.model.load_audio()
        self.gatherer = Gatherer(
            self.model, self.limits.batch_wait, self.limits.max_pending, self.metrics.batch
        )

    def stop(self) -> None:
        if self.gatherer is not None:
            self.gatherer.close()

    def describe(self) -> dict:
        model = self.model
        widths = {
            space: {tower: model.width(tower, space) for tower in ("audio", "text")}
            for space in SPACES
        }
        return {
            "model_id": self.identity.model,
            "family": model.manifest.family,
            "title": model_title(model),
            "precision": model.precision,
            "backend": model.backend,
            "providers": model.providers,
            "widths": widths,
            "sample_rate": model.sample_rate,
            "window_seconds": self.window_seconds,
            "random_weights": model.manifest.random_weights,
            "catalog": None if self.tracks is None else len(self.tracks.catalog),
        }

    def token_count(self, texts: list[str]) -> int:
        """Tokens the text tower reads for ``texts`` (after its truncation): the usage."""
        return self.model.token_count(texts)

    async def embed_text(self, texts: list[str], space: str) -> np.ndarray:
        return await asyncio.wrap_future(self.gatherer.text(texts, space))

    async def embed_uploads(
        self, uploads: list[tuple[str, Path]], space: str, windows: bool
    ) -> tuple[list[Track], AudioRows]:
        """Decode every upload (in threads), then embed their windows through the gatherer."""
        with self.gatherer.announced():
            tracks = await run_in_threadpool(self.decode, uploads)
        rows = await asyncio.wrap_future(self.gatherer.audio(tracks, space, windows))
        return tracks, rows

    def decode(self, uploads: list[tuple[str, Path]]) -> list[Track]:
        tracks = []
        for index, (name, path) in enumerate(uploads):
            try:
                track = self.model.load_tracks([path], None)[0]
            except InputError as err:
                raise Problem(400, f"file {index} ({name!r}): {err.reason}") from None
            if track.duration > self.limits.max_audio_seconds:
                raise Problem(
                    413,
                    f"file {index} ({name!r}): {track.duration:.0f} s of audio are more than "
                    f"the {self.limits.max_audio_seconds:.0f}-s limit",
                )
            tracks.append(track)
        return tracks

    def catalog(self) -> Tracks:
        if self.tracks is None:
            raise Problem(404, "this server has no catalog (start it with --catalog)", "not_found")
        return self.tracks

    async def search(self, query: np.ndarray, k: int) -> dict:
        hits = await run_in_threadpool(self.catalog().search, query, k)
        return {
            "results": [
                {
                    "id": hit.id,
                    "path": readable(hit.path),
                    "name": Path(readable(hit.path)).name,
                    "score": hit.score,
                    "duration": hit.duration,
                }
                for hit in hits
            ]
        }


@contextlib.asynccontextmanager
async def saved_uploads(request: Request, limits: Limits) -> AsyncIterator[list[tuple[str, Path]]]:
    """The request's audio as ``(name, temporary file)`` pairs: every multipart ``file`` part,
    else the raw body with its content type. The files are deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ttmr-upload-"))
    try:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        saved: list[tuple[str, Path]] = []
        if kind == "multipart/form-data":
            form = await request.form(max_files=limits.max_items, max_fields=32)
            parts = form.getlist("file")
            if not parts:
                raise Problem(400, "no 'file' part in the multipart upload")
            for index, part in enumerate(parts):
                if not isinstance(part, UploadFile):
                    raise Problem(400, f"file {index}: the 'file' part is not a file upload")
                name = part.filename or f"upload {index}"
                path = folder / f"{index}{Path(name).suffix[:10]}"
                with open(path, "wb") as out:
                    await run_in_threadpool(shutil.copyfileobj, part.file, out)
                saved.append((name, path))
            request.state.form = form
        else:
            body = await request.body()
            if not body:
                raise Problem(400, "the request has no audio (send multipart 'file' parts)")
            name = request.query_params.get("filename", "upload")
            path = folder / f"0{UPLOAD_SUFFIXES.get(kind, Path(name).suffix[:10])}"
            path.write_bytes(body)
            saved.append((name, path))
        yield saved
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def option(request: Request, name: str) -> object:
    """An option given as a query parameter or as a form field beside the files."""
    form = getattr(request.state, "form", None)
    if name in request.query_params:
        return request.query_params[name]
    return form.get(name) if form is not None else None


def audio_type(path: Path) -> str:
    suffix = path.suffix.lower()
    known = AUDIO_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
    return known or "application/octet-stream"


def check_range(header: str, size: int) -> None:
    """A Range header that ``FileResponse`` can serve, else a JSON error (its own are text):
    400 for a malformed one, 416 when no range starts inside the file."""
    unit, _, spec = header.partition("=")
    spans = [part.strip().partition("-") for part in spec.split(",")]
    if unit.strip().lower() != "bytes" or not all(
        (start or end)
        and (not start or start.isdigit())
        and (not end or end.isdigit())
        and not (start and end and int(start) > int(end))
        for start, _, end in spans
    ):
        raise Problem(400, f"malformed Range header {header!r} (expected bytes=START-END)")
    if not any(int(start) < size if start else int(end) > 0 for start, _, end in spans):
        raise Problem(
            416,
            f"Range {header!r} lies past the file's {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )


def page_file(name: str) -> bytes:
    return importlib.resources.files("runtime.serving").joinpath("page", name).read_bytes()


def query_vector(given: object, width: int) -> np.ndarray:
    if not isinstance(given, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in given
    ):
        raise Problem(400, "vector must be a list of numbers")
    if len(given) != width:
        raise Problem(400, f"vector has {len(given)} numbers; the catalog's rows have {width}")
    vector = np.asarray(given, np.float32)
    if not np.isfinite(vector).all() or not np.any(vector):
        raise Problem(400, "vector must be finite and not all zeros")
    return vector


def create_app(
    model_dir: str | os.PathLike,
    catalog: str | os.PathLike | None = None,
    *,
    api_key: str | None = None,
    cors: Sequence[str] = (),
    limits: Limits = Limits(),
    **embedder_options,
) -> FastAPI:
    """The service of the model in ``model_dir`` (``embedder_options``: the ``Embedder``'s
    ``threads``, ``batch_size``, ``precision``, ``backend``), searching ``catalog`` if given.
    ``api_key``: requests must carry it (``Authorization: Bearer``). ``cors``: origins whose
    pages may call the API (none by default)."""
    model = Embedder(model_dir, **embedder_options)
    opened = None
    if catalog is not None:
        opened = Catalog.open(Path(catalog), ModelIdentity.of_model(model))
    service = Service(model, opened, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(service.start)
        yield
        await run_in_threadpool(service.stop)

    app = FastAPI(title="ttmr serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.add_middleware(
        Guard, api_key=api_key, max_bytes=limits.max_upload_bytes, metrics=service.metrics
    )
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Range"],
        )

    @app.exception_handler(Problem)
    async def problem(request: Request, err: Problem) -> JSONResponse:
        response = error_body(err.status, err.message, err.kind)
        response.headers.update(err.headers)
        return response

    @app.exception_handler(InputError)
    async def bad_input(request: Request, err: InputError) -> JSONResponse:
        return error_body(400, str(err))

    @app.exception_handler(Busy)
    async def busy(request: Request, err: Busy) -> JSONResponse:
        response = error_body(429, str(err), "busy")
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        names = {404: "no such endpoint", 405: "method not allowed here"}
        message = names.get(err.status_code, str(err.detail))
        return error_body(err.status_code, f"{message}: {request.method} {request.url.path}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_body(400, f"{where}: {first.get('msg')}")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        body = prometheus_client.generate_latest(service.metrics.registry)
        return Response(body, media_type=prometheus_client.CONTENT_TYPE_LATEST)

    @app.get("/v1/model")
    async def describe() -> dict:
        return service.describe()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        # JSONResponse as it is: FastAPI's encoder would walk every float of the rows again.
        body = await json_body(request)
        if "input" not in body:
            raise Problem(400, "the body needs 'input': a string or a list of strings")
        texts = check_sentences(body["input"], limits)
        space = parse_space(body.get("space"))
        normalize = parse_flag(body.get("normalize"), "normalize")
        rows = finish(await service.embed_text(texts, space), normalize)
        tokens = service.token_count(texts)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": index, "embedding": row}
                    for index, row in enumerate(rows_json(rows))
                ],
                "model": service.identity.model,
                "space": space,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @app.post("/v1/audio/embeddings")
    async def audio_embeddings(request: Request) -> JSONResponse:
        async with saved_uploads(request, limits) as uploads:
            space = parse_space(option(request, "space"))
            normalize = parse_flag(option(request, "normalize"), "normalize")
            with_windows = parse_flag(option(request, "windows"), "windows")
            tracks, rows = await service.embed_uploads(uploads, space, with_windows)
        means = finish(rows.tracks, normalize)
        data = []
        for index, ((name, _), track, row) in enumerate(zip(uploads, tracks, means, strict=True)):
            item = {
                "object": "embedding",
                "index": index,
                "filename": name,
                "duration": track.duration,
                "embedding": row.astype(float).tolist(),
            }
            if rows.windows is not None:
                seconds = service.window_seconds
                item["windows"] = [
                    {"start": i * seconds, "end": (i + 1) * seconds, "embedding": window}
                    for i, window in enumerate(rows_json(finish(rows.windows[index], normalize)))
                ]
            data.append(item)
        body = {"object": "list", "data": data, "model": service.identity.model, "space": space}
        return JSONResponse(body)

    @app.get("/v1/search")
    async def search_text(request: Request, q: str | None = None, k: str = "10") -> dict:
        service.catalog()
        if q is None or not q.strip():
            raise Problem(400, "the query q is empty (GET /v1/search?q=TEXT&k=10)")
        texts = check_sentences(q, limits)
        return await service.search((await service.embed_text(texts, "joint"))[0], parse_k(k))

    @app.post("/v1/search")
    async def search(request: Request) -> dict:
        tracks = service.catalog()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            async with saved_uploads(request, limits) as uploads:
                if len(uploads) != 1:
                    raise Problem(400, f"search takes one file, got {len(uploads)}")
                k = parse_k(option(request, "k") or 10)
                _, rows = await service.embed_uploads(uploads, "joint", False)
            return await service.search(rows.tracks[0], k)
        body = await json_body(request)
        given = [name for name in ("text", "vector", "id") if name in body]
        if len(given) != 1:
            raise Problem(400, "give one of 'text', 'vector' or 'id' (or upload a file)")
        k = parse_k(body.get("k", 10))
        if "text" in body:
            texts = check_sentences(body["text"], limits)
            if len(texts) != 1:
                raise Problem(400, "text must be one string")
            query = (await service.embed_text(texts, "joint"))[0]
        elif "vector" in body:
            query = query_vector(body["vector"], tracks.catalog.identity.width)
        else:
            query = await run_in_threadpool(tracks.vector, str(body["id"]))
        return await service.search(query, k)

    @app.get("/v1/tracks/{ident}")
    async def track(ident: str) -> dict:
        path, duration = service.catalog().get(ident)
        return {"id": ident, "path": path, "name": Path(path).name, "duration": duration}

    @app.get("/v1/tracks/{ident}/audio")
    async def track_audio(request: Request, ident: str) -> FileResponse:
        path = Path(service.catalog().get(ident)[0])
        if not path.is_file():
            raise Problem(404, f"track {ident!r}: its file is gone from the disk", "not_found")
        if "range" in request.headers:
            check_range(request.headers["range"], path.stat().st_size)
        return FileResponse(path, media_type=audio_type(path))

    @app.get("/")
    async def page() -> Response:
        return Response(page_file("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/page/{name}")
    async def page_asset(name: str) -> Response:
        types = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            raise Problem(404, f"no page file {name!r}", "not_found")
        return Response(page_file(name), media_type=f"{types[name]}; charset=utf-8")

    return app
