"""``ttmr serve`` as a client meets it, over loopback, against one real server process per
module (small model): embeddings equal the in-process Embedder's, search equals ``ttmr
search``, tracks stream with Range and only by id, every bad request is a 4xx JSON error and
the server stays up; the key, CORS, the bind address, the missing extra and SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
import soundfile as sf

from export.quantize import cosines
from export.synthetic import random_track
from runtime import Embedder
from runtime.catalog.store import Catalog, ModelIdentity, track_id
from tests.runtime.audio.test_ffmpeg import encode
from tests.serve_server import RATE, build_catalog, start_server, stop_server, write_library

COSINE = 0.99999
KEY = "a+test/key=of-32-characters-long"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> list[Path]:
    return write_library(tmp_path_factory.mktemp("music"), 6, seconds=21.0)


@pytest.fixture(scope="module")
def catalog(small_model_dir, library, tmp_path_factory) -> Path:
    return build_catalog(small_model_dir, library[0].parent, tmp_path_factory.mktemp("db") / "c")


@pytest.fixture(scope="module")
def served(small_model_dir, catalog, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "serve.log"
    running = start_server(small_model_dir, log, "--catalog", catalog, "--max-upload-mb", "2")
    yield running
    assert stop_server(running) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(served):
    with served.client() as http:
        yield http


@pytest.fixture(scope="module")
def model(small_model_dir) -> Embedder:
    return Embedder(small_model_dir)


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, Path]:
    """A FLAC and an m4a (AAC, which only PyAV decodes) of different music and lengths."""
    folder = tmp_path_factory.mktemp("uploads")
    flac, m4a = folder / "upload one.flac", folder / "upload two.m4a"
    encode(flac, random_track(7, 25.0, RATE), RATE)
    encode(m4a, random_track(8, 13.0, 44_100), 44_100)
    return {"flac": flac, "m4a": m4a}


def assert_rows_equal(got: list, expected: np.ndarray) -> None:
    got = np.asarray(got, np.float32)
    assert got.shape == expected.shape
    assert cosines(got, expected).min() >= COSINE
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), 1e-4)


def error_of(response) -> str:
    """The message of a 4xx JSON error."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]["message"]


def test_text_embeddings_equal_the_embedders_and_follow_the_openai_shape(client, model):
    texts = ["a calm solo piano piece in D", "fast techno with a heavy kick", "jazz"]
    body = client.post("/v1/embeddings", json={"input": texts, "model": "any"}).json()
    assert body["object"] == "list"
    assert body["model"] == ModelIdentity.of_model(model).model
    assert [row["index"] for row in body["data"]] == [0, 1, 2]
    assert {row["object"] for row in body["data"]} == {"embedding"}
    assert body["usage"]["prompt_tokens"] > len(texts)
    assert_rows_equal([row["embedding"] for row in body["data"]], model.embed_text(texts))
    one = client.post("/v1/embeddings", json={"input": texts[0], "normalize": True}).json()
    assert_rows_equal([one["data"][0]["embedding"]], model.embed_text(texts[:1], normalize=True))
    encoder = client.post("/v1/embeddings", json={"input": texts, "space": "encoder"}).json()
    assert_rows_equal(
        [row["embedding"] for row in encoder["data"]], model.embed_text(texts, space="encoder")
    )


@pytest.mark.parametrize("kind", ["flac", "m4a"])
def test_an_uploaded_file_embeds_as_embed_audio_does(client, model, uploads, kind):
    path = uploads[kind]
    with open(path, "rb") as fh:
        response = client.post("/v1/audio/embeddings", files={"file": (path.name, fh)})
    (row,) = response.json()["data"]
    assert row["filename"] == path.name
    expected_duration = sf.info(path).duration if kind == "flac" else 13.0
    assert row["duration"] == pytest.approx(expected_duration, abs=0.05)
    assert_rows_equal([row["embedding"]], model.embed_audio([path]))


def test_several_files_give_one_row_each_in_order_with_their_windows(client, model, uploads):
    paths = [uploads["m4a"], uploads["flac"], uploads["m4a"]]
    files = [("file", (p.name, p.read_bytes())) for p in paths]
    data = client.post(
        "/v1/audio/embeddings", files=files, data={"windows": "true", "normalize": "true"}
    ).json()["data"]
    assert [row["filename"] for row in data] == [p.name for p in paths]
    assert_rows_equal([row["embedding"] for row in data], model.embed_audio(paths, normalize=True))
    tracks = model.load_tracks(paths, None)
    windows = model.embed_windows(tracks)
    first = 0
    for row, track in zip(data, tracks, strict=True):
        count = len(track.windows)
        mine = windows[first : first + count]
        first += count
        mine = mine / np.linalg.norm(mine, axis=1, keepdims=True)
        assert_rows_equal([w["embedding"] for w in row["windows"]], mine)
        assert [(w["start"], w["end"]) for w in row["windows"]] == [
            (10.0 * i, 10.0 * (i + 1)) for i in range(count)
        ]


def test_a_raw_body_with_its_content_type_embeds_too(client, model, uploads):
    response = client.post(
        "/v1/audio/embeddings?filename=x.m4a",
        content=uploads["m4a"].read_bytes(),
        headers={"content-type": "audio/mp4"},
    )
    assert_rows_equal(
        [response.json()["data"][0]["embedding"]], model.embed_audio([uploads["m4a"]])
    )


def ttmr_search(catalog: Path, model_dir: Path, *query: str) -> list[tuple[str, float]]:
    """``ttmr search``'s table: (path, score) per row."""
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "search", str(catalog), *query, "-k", "4"],
        capture_output=True,
        text=True,
        env={**os.environ, "TTMR_MODEL_DIR": str(model_dir)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = []
    for line in done.stdout.splitlines()[1:]:
        if line.startswith("("):
            continue
        _rank, score, _duration, path = line.split(maxsplit=3)
        rows.append((path.rstrip(), float(score)))
    return rows


def test_search_by_text_and_by_file_equals_ttmr_search(
    client, catalog, small_model_dir, uploads, library
):
    query = "a calm solo piano piece in D"
    expected = ttmr_search(catalog, small_model_dir, query)
    assert len(expected) == 4
    for results in (
        client.get("/v1/search", params={"q": query, "k": 4}).json()["results"],
        client.post("/v1/search", json={"text": query, "k": 4}).json()["results"],
    ):
        assert [hit["path"] for hit in results] == [path for path, _ in expected]
        np.testing.assert_allclose([h["score"] for h in results], [s for _, s in expected], 1e-4)
        assert [hit["id"] for hit in results] == [track_id(path) for path, _ in expected]
        assert all(hit["duration"] == pytest.approx(21.0) for hit in results)
    like = ttmr_search(catalog, small_model_dir, "--like", str(uploads["flac"]))
    with open(uploads["flac"], "rb") as fh:
        found = client.post("/v1/search", files={"file": fh}, data={"k": "4"}).json()["results"]
    assert [hit["path"] for hit in found] == [path for path, _ in like]


def test_search_by_vector_and_by_id_find_the_track_itself_first(client, model, library):
    vector = model.embed_audio([library[2]])[0]
    by_vector = client.post("/v1/search", json={"vector": vector.tolist(), "k": 3}).json()
    assert by_vector["results"][0]["path"] == str(library[2])
    assert by_vector["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    ident = track_id(str(library[2]))
    by_id = client.post("/v1/search", json={"id": ident, "k": 3}).json()["results"]
    assert [hit["path"] for hit in by_id] == [hit["path"] for hit in by_vector["results"]]


def test_the_model_line_names_the_catalogs_model(client, model, catalog):
    body = client.get("/v1/model").json()
    assert body["model_id"] == ModelIdentity.of_model(model).model
    assert body["model_id"] == Catalog.open(catalog).identity.model
    assert body["family"] == "ttmrpp" and body["precision"] == "fp32"
    assert body["widths"] == {
        space: {tower: model.width(tower, space) for tower in ("audio", "text")}
        for space in ("joint", "encoder")
    }
    assert body["sample_rate"] == model.sample_rate and body["catalog"] == 6


def test_a_track_streams_whole_and_by_range_with_the_exact_bytes(client, library):
    path = library[1]
    whole = path.read_bytes()
    ident = track_id(str(path))
    info = client.get(f"/v1/tracks/{ident}").json()
    assert info["path"] == str(path) and info["duration"] == pytest.approx(21.0)
    full = client.get(f"/v1/tracks/{ident}/audio")
    assert full.status_code == 200 and full.content == whole
    assert full.headers["content-type"] == "audio/flac"
    assert full.headers["accept-ranges"] == "bytes"
    size = len(whole)
    for asked, start, end in [
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, size),
        ("bytes=-500", size - 500, size),
        (f"bytes=17-{size + 50}", 17, size),
    ]:
        part = client.get(f"/v1/tracks/{ident}/audio", headers={"Range": asked})
        assert part.status_code == 206, asked
        assert part.content == whole[start:end], asked
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", asked
    beyond = client.get(f"/v1/tracks/{ident}/audio", headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and "past the file" in error_of(beyond)
    assert beyond.headers["content-range"] == f"bytes */{size}"
    for malformed in ("bytes=abc", "lines=0-9", "bytes=9-3", "bytes=-"):
        refused = client.get(f"/v1/tracks/{ident}/audio", headers={"Range": malformed})
        assert "malformed Range" in error_of(refused), malformed


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """A request line sent as written (a client library would normalise ``..``)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("GET", target, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    status, body = response.status, response.read()
    connection.close()
    return status, body


def test_paths_and_unknown_ids_never_serve_a_byte_of_another_file(served, library, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET-" * 100)
    track = track_id(str(library[0]))
    targets = [
        "/v1/tracks/..%2F..%2F..%2Fetc%2Fpasswd/audio",
        f"/v1/tracks/{track}%2F..%2F..%2Fsecret.txt/audio",
        "/v1/tracks/../../etc/passwd/audio",
        f"/v1/tracks/{quote(str(secret), safe='')}/audio",
        f"/v1/tracks/{quote(str(secret))}/audio",
        f"/v1/tracks/{track[:-1]}{'1' if track[-1] == '0' else '0'}/audio",
        "/v1/tracks/0000000000000000",
        f"/v1/tracks/{quote(str(library[0]), safe='')}/audio",
        "/v1/tracks/%00/audio",
    ]
    for target in targets:
        status, body = raw_get(served.url, target)
        assert status in (400, 404), (target, status)
        assert b"SECRET" not in body and b"root:" not in body and b"fLaC" not in body, target
        assert "message" in json.loads(body)["error"], target


@pytest.mark.parametrize(
    "method, path, payload, expected",
    [
        ("post", "/v1/embeddings", {"content": b"{oops"}, "malformed JSON"),
        ("post", "/v1/embeddings", {"json": [1, 2]}, "must be an object"),
        ("post", "/v1/embeddings", {"json": {}}, "needs 'input'"),
        ("post", "/v1/embeddings", {"json": {"input": []}}, "non-empty"),
        ("post", "/v1/embeddings", {"json": {"input": "   "}}, "input 0: the text is empty"),
        ("post", "/v1/embeddings", {"json": {"input": ["a", 3]}}, "input 1: expected a string"),
        ("post", "/v1/embeddings", {"json": {"input": "x" * 10_001}}, "more than 10000"),
        ("post", "/v1/embeddings", {"content": b'{"input": ["ok", "\\ud800"]}'}, "item 1"),
        ("post", "/v1/embeddings", {"json": {"input": ["a"] * 65}}, "65 sentences"),
        ("post", "/v1/embeddings", {"json": {"input": "a", "space": "x"}}, "space must be"),
        (
            "post",
            "/v1/audio/embeddings",
            {"files": {"file": ("bad.flac", b"fLaC" + bytes(99))}},
            "file 0 ('bad.flac'): cannot decode audio",
        ),
        ("post", "/v1/audio/embeddings", {"files": {"other": ("a.wav", b"x")}}, "no 'file' part"),
        ("post", "/v1/audio/embeddings", {"content": b""}, "has no audio"),
        ("post", "/v1/audio/embeddings", {"content": bytes(3 * 2**20)}, "larger than 2 MB"),
        ("get", "/v1/search", {"params": {"q": ""}}, "the query q is empty"),
        ("get", "/v1/search", {"params": {"q": "piano", "k": "0"}}, "k must be"),
        ("post", "/v1/search", {"json": {"text": "a", "id": "b"}}, "give one of"),
        ("post", "/v1/search", {"json": {"vector": [1.0, 2.0]}}, "vector has 2 numbers"),
        ("post", "/v1/search", {"json": {"id": "nope"}}, "no track with id 'nope'"),
        ("get", "/v1/tracks/ffffffffffffffff/audio", {}, "no track with id"),
        ("get", "/v1/nothing", {}, "no such endpoint"),
        ("delete", "/v1/embeddings", {}, "method not allowed"),
    ],
)
def test_a_bad_request_is_a_4xx_json_error_naming_the_problem(
    client, method, path, payload, expected
):
    assert expected in error_of(getattr(client, method)(path, **payload))
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_body_past_the_upload_limit_is_refused_while_it_streams(served):
    """No Content-Length: the limit is counted as the body arrives."""

    def chunks():
        for _ in range(40):
            yield bytes(100_000)

    with served.client() as http:
        response = http.post(
            "/v1/audio/embeddings", content=chunks(), headers={"content-type": "audio/flac"}
        )
    assert response.status_code == 413 and "larger than 2 MB" in error_of(response)


def requests_per_call(client, kind: str) -> tuple[float, float]:
    """(requests, model calls) of ``kind`` so far, from the metrics."""
    counts = {}
    for line in client.get("/metrics").text.splitlines():
        for field in ("sum", "count"):
            if line.startswith(f'ttmr_batch_requests_{field}{{kind="{kind}"}}'):
                counts[field] = float(line.split()[-1])
    return counts["sum"], counts["count"]


def test_concurrent_requests_share_model_calls_and_get_their_own_rows(served, model):
    texts = [f"song number {i} with {'many ' * (i % 6)}words" for i in range(48)]
    with served.client() as http:
        before = requests_per_call(http, "text")

        def ask(text: str) -> list[float]:
            with served.client() as mine:
                return mine.post("/v1/embeddings", json={"input": text}).json()["data"][0]

        with ThreadPoolExecutor(16) as pool:
            rows = [row["embedding"] for row in pool.map(ask, texts)]
        after = requests_per_call(http, "text")
    assert_rows_equal(rows, np.concatenate([model.embed_text([text]) for text in texts]))
    requests, calls = after[0] - before[0], after[1] - before[1]
    # at least a quarter fewer calls than requests: a quiet machine answers fast and gathers less
    assert requests == len(texts) and calls <= len(texts) * 3 / 4, (requests, calls)


def test_metrics_count_requests_latency_batches_and_the_queue(client):
    client.post("/v1/embeddings", json={"input": ["metrics"]})
    text = client.get("/metrics").text
    assert 'ttmr_requests_total{method="POST",route="/v1/embeddings",status="200"}' in text
    assert "ttmr_request_seconds_bucket" in text
    assert 'ttmr_batch_rows_count{kind="text"}' in text
    assert "ttmr_queue_depth 0.0" in text


def test_cors_is_closed_by_default(client):
    response = client.get("/v1/model", headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/v1/embeddings",
        headers={"Origin": "http://elsewhere.test", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/page/app.js"' in page.text
    assert client.get("/page/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/page/style.css").status_code == 200
    assert client.get("/page/..%2Fhttp.py").status_code == 404


@pytest.fixture(scope="module")
def keyed(small_model_dir, tmp_path_factory):
    """A server that wants a key and lets one origin's pages call it."""
    folder = tmp_path_factory.mktemp("keyed")
    (folder / "key").write_text(KEY + "\n")
    running = start_server(
        small_model_dir,
        folder / "serve.log",
        "--api-key-file",
        folder / "key",
        "--cors",
        "http://app.test",
    )
    yield running
    assert stop_server(running) == 0


def test_with_a_key_every_api_call_needs_the_bearer_token(keyed):
    with keyed.client() as http:
        assert "API key" in error_of(http.post("/v1/embeddings", json={"input": "a"}))
        wrong = http.get("/v1/model", headers={"Authorization": "Bearer not-the-key"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert http.get("/metrics").status_code == 401
        right = {"Authorization": f"Bearer {KEY}"}
        assert http.get("/v1/model", headers=right).status_code == 200
        assert http.post("/v1/embeddings", json={"input": "a"}, headers=right).status_code == 200
    with keyed.client(cookies={"ttmr_key": quote(KEY, safe="")}) as http:  # as the page sets it
        assert http.get("/v1/model").status_code == 200
    with keyed.client() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/").status_code == 200  # the page asks for the key itself
        assert "no catalog" in error_of(http.get("/v1/search?q=a", headers=right))


def test_cors_opens_to_the_named_origin_only(keyed):
    with keyed.client() as http:
        ok = http.options(
            "/v1/embeddings",
            headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST"},
        )
        assert ok.headers["access-control-allow-origin"] == "http://app.test"
        other = http.get("/healthz", headers={"Origin": "http://other.test"})
        assert "access-control-allow-origin" not in other.headers


def serve_command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_another_address_without_a_key_refuses_to_start_in_one_line(small_model_dir):
    done = serve_command(
        "-m", "runtime", "serve", "--model-dir", str(small_model_dir), "--host", "0.0.0.0"
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "--host 0.0.0.0" in done.stderr and "--api-key-file" in done.stderr


def test_a_short_key_file_is_refused(small_model_dir, tmp_path):
    (tmp_path / "key").write_text("short")
    done = serve_command(
        "-m", "runtime", "serve", "--model-dir", str(small_model_dir),
        "--api-key-file", str(tmp_path / "key"),
    )  # fmt: skip
    assert done.returncode == 2 and "at least 16 characters" in done.stderr


def test_without_the_serve_extra_one_line_names_it(small_model_dir):
    blocked = (
        "import sys; sys.modules['fastapi'] = None; "
        "import importlib.util as u; find = u.find_spec; "
        "u.find_spec = lambda name, *a: None if name == 'fastapi' else find(name, *a); "
        "from runtime.cli.main import main; "
        f"sys.exit(main(['serve', '--model-dir', {str(small_model_dir)!r}]))"
    )
    done = serve_command("-c", blocked)
    assert done.returncode == 2
    assert done.stderr.strip() == "ttmr: error: " + (
        "ttmr serve needs FastAPI and uvicorn: pip install -e '.[serve]'"
    )


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(small_model_dir, uploads, tmp_path):
    running = start_server(small_model_dir, tmp_path / "serve.log")
    body = uploads["flac"].read_bytes()
    parts = urlsplit(running.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.putrequest("POST", "/v1/audio/embeddings?filename=a.flac")
    connection.putheader("Content-Type", "audio/flac")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    connection.send(body[: len(body) // 2])  # the request is in flight
    time.sleep(0.5)
    stopped = threading.Thread(target=lambda: running.process.send_signal(15))
    stopped.start()
    time.sleep(0.5)
    connection.send(body[len(body) // 2 :])
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["data"][0]["filename"] == "a.flac"
    connection.close()
    stopped.join()
    assert stop_server(running) == 0
    assert "Traceback" not in running.log.read_text()
