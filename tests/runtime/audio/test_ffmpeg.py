"""Every audio format: PyAV decodes what libsndfile cannot (m4a, webm, …), libsndfile stays
first where it decodes, and a folder of hundreds of files in eight formats with odd names
indexes completely, listing what it cannot read."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

import runtime.audio.reading
from export.synthetic import random_track
from runtime.audio.reading import decode
from runtime.catalog.npz import NpzCatalog
from runtime.cli.main import main
from runtime.errors import InputError, MissingDependency

FFMPEG_CODECS = {".m4a": "aac", ".webm": "libopus", ".opus": "libopus", ".mp3": "libmp3lame"}
SOUNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF"}


def encode(path: Path, samples: np.ndarray, rate: int) -> None:
    """Mono float samples → ``path`` in the format its extension names (PyAV's encoders for
    what soundfile cannot write)."""
    codec = FFMPEG_CODECS.get(path.suffix.lower())
    if codec is None:
        sf.write(path, samples, rate, format=SOUNDFILE_FORMATS[path.suffix.lower()])
        return
    with av.open(str(path), "w", format="mp4" if path.suffix.lower() == ".m4a" else None) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = rate
        convert = av.AudioResampler(
            format=stream.codec_context.format.name, layout="mono", rate=rate
        )
        for converted in convert.resample(frame):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))


def sine(frequency: float, seconds: float, rate: int) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("extension", [".m4a", ".webm", ".M4A"])
def test_pyav_decodes_what_libsndfile_cannot_to_the_encoded_signal(tmp_path, extension):
    rate = 48_000 if extension == ".webm" else 44_100
    path = tmp_path / f"tone{extension}"
    encode(path, sine(440.0, 1.0, rate), rate)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)  # libsndfile cannot
    samples, found_rate = decode(0, path, None)
    assert found_rate == rate and samples.ndim == 1
    assert abs(len(samples) / rate - 1.0) < 0.1  # the codec's priming frames at most
    assert peak_frequency(samples, rate) == pytest.approx(440.0, abs=2.0)


def test_libsndfile_stays_first_where_it_decodes(tmp_path, monkeypatch):
    """Parity with the reference: a file libsndfile reads never reaches PyAV."""
    path = tmp_path / "a.flac"
    sf.write(path, sine(220.0, 0.5, 22050), 22050)

    def refuse(*args):
        raise AssertionError("PyAV was asked")

    monkeypatch.setattr(runtime.audio.reading, "read_with_ffmpeg", refuse)
    samples, _ = decode(0, path, None)
    np.testing.assert_array_equal(samples, sf.read(path, dtype="float32")[0])


def test_undecodable_files_are_input_errors_naming_the_file(tmp_path):
    cases = [
        ("junk.m4a", b"\x00" * 2000, "cannot decode audio"),
        ("empty.webm", b"", r"the file is empty \(0 bytes\)"),
        ("text.wav", b"hello", "cannot decode audio"),
    ]
    for name, data, why in cases:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=f"item 0 .*{name}.*: {why}"):
            decode(0, tmp_path / name, None)


def test_without_pyav_such_a_file_names_the_extra_to_install(tmp_path, monkeypatch):
    path = tmp_path / "a.m4a"
    encode(path, sine(440.0, 0.3, 44_100), 44_100)
    monkeypatch.setitem(sys.modules, "av", None)  # import av fails
    with pytest.raises(MissingDependency, match=r"a\.m4a.*PyAV .*pip install -e '\.\[formats\]'"):
        decode(0, path, None)


ODD_NAMES = ["Ça va {}", "two  spaces {}", "låt nr {}", "UPPER {}", "quote's {}", "日本 {}"]


@pytest.fixture
def big_folder(tmp_path) -> Path:
    """200 files: 25 in each of eight formats, odd names, some upper-case extensions, in
    nested folders; 0.2 s each (one window each)."""
    root = tmp_path / "formats"
    extensions = [*FFMPEG_CODECS, *SOUNDFILE_FORMATS]
    for number in range(200):
        extension = extensions[number % len(extensions)]
        if number % 3 == 0:
            extension = extension.upper()
        rate = 48_000 if extension.lower() in (".opus", ".webm") else 22_050
        folder = root / f"Folder {number % 4}" / ("Ünïcode" if number % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        name = ODD_NAMES[number % len(ODD_NAMES)].format(number) + extension
        encode(folder / name, random_track(number, 0.2, rate), rate)
    return root


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_a_folder_of_every_format_indexes_completely_and_lists_what_it_cannot_read(
    big_folder, small_model_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TTMR_MODEL_DIR", str(small_model_dir))
    (big_folder / "broken.M4A").write_bytes(b"ftypM4A " + bytes(500))
    locked = big_folder / "locked.flac"
    sf.write(locked, random_track(1, 0.2), 22050)
    os.mkfifo(big_folder / "pipe.m4a")  # reading it would wait for a writer
    (big_folder / "loop.webm").symlink_to(big_folder / "loop.webm")
    real_open = open

    def unreadable(path, *args, **kwargs):  # as root, chmod 000 would not stop a read
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(runtime.audio.reading, "open", unreadable, raising=False)
    catalog = tmp_path / "catalog"
    assert main(["index", str(big_folder), "--out", str(catalog)]) == 3
    out = capsys.readouterr().out
    assert "indexed 200 new files; 200 in" in out
    assert "could not read 2 files:" in out
    assert f"{big_folder / 'broken.M4A'}: cannot decode audio" in out
    assert f"{locked}: PermissionError" in out
    rows = NpzCatalog.load(catalog)
    assert len(set(rows.paths)) == 200 and np.isfinite(rows.matrix()).all()
    assert {Path(p).suffix.lower() for p in rows.paths} == {*FFMPEG_CODECS, *SOUNDFILE_FORMATS}
