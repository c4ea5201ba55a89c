"""``manifest.json``, the contract between the exporter, the runtime, Triton and TensorRT.

One typed ``Manifest`` (frozen dataclasses), one reader (``read_manifest``) and one writer
(``write_manifest``): ``export/to_onnx.py`` writes it, ``quantize.py``, ``fp16.py`` and
``to_tensorrt.py`` read it and write it back with their section added, and the runtime, the
Triton models and ``to_triton.py`` read it. It describes everything that differs between
model families at run time (rates, window size, preprocessing steps, text padding, the
graphs' inputs and outputs), so the runtime never needs to know a family by name
(``docs/models.md``, "The manifest").

``FORMAT`` is the layout's version: a manifest of another format is refused with one line
saying which side is out of date. The JSON layout of format 3 (format 2's audio graph took
``track`` ids instead of ``floor``, and had no floor graph):

    format, family, random_weights, note, hparams {…}, opset, checkpoint {file, sha256, …},
    versions {library: version},
    audio {file, sample_rate, window_samples,
           preprocessing {peak_normalise, int16, short_audio}, inputs, outputs},
    text {file, tokenizer, max_length, padding, pad_token_id, inputs, outputs},
    [floor {file, inputs, outputs}],
    [int8 {audio, text, audio_method, [calibration {source, windows}], text_method,
           [accuracy {…}]}],
    [fp16 {audio, text, float32_ops, float32_frontend}],
    [tensorrt {precision: {audio, text, [floor], max_batch, max_tokens, tensorrt, device}}]

where ``inputs`` / ``outputs`` are lists of ``{name, dtype, shape}`` (a symbolic dimension
by its name). ``floor`` is the graph of a family whose windows of one track share a level
set by the whole track (TTMR++'s log-mel floor: ``waveform`` → each window's ``floor``);
the audio graph then takes each row's level as its ``floor`` input (``runtime.batching``).
Needs only the standard library: the runtime and the exporter both import it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ModelFolderError

FORMAT = 3
FILE = "manifest.json"
# What a demo export (``random_weights``) says in its manifest's ``note`` and wherever its
# embeddings, scores or metrics are shown.
RANDOM_WEIGHTS_NOTE = (
    "RANDOM WEIGHTS (demo model): embeddings, and every score or metric from them, are "
    "meaningless; use a real checkpoint"
)
TOWERS = ("audio", "text")
SHORT_AUDIO = ("zero_pad", "repeat_pad")
TEXT_PADDING = ("longest", "max_length")


@dataclass(frozen=True)
class Preprocessing:
    """What the runtime does to a decoded, downmixed track before the audio graph:
    resample to ``sample_rate`` (soxr HQ), the listed steps, then windows of
    ``window_samples`` (docs/models.md, "Audio preprocessing")."""

    sample_rate: int
    window_samples: int
    peak_normalise: bool  # min/max to [-1, 1] over the whole track
    int16: bool  # clip to [-1, 1], then round-trip through int16
    short_audio: str  # one of SHORT_AUDIO: how a track shorter than a window is filled


@dataclass(frozen=True)
class Tensor:
    """A graph input or output: name, dtype (``float32``, ``int64``), shape (an int for a
    fixed dimension, a name for a symbolic one)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class AudioTower:
    file: str
    preprocessing: Preprocessing
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @property
    def sample_rate(self) -> int:
        return self.preprocessing.sample_rate

    @property
    def window_samples(self) -> int:
        return self.preprocessing.window_samples


@dataclass(frozen=True)
class TextTower:
    """``padding``: ``longest`` (to the longest text of a batch) or ``max_length`` (every
    text to ``max_length`` tokens); ``pad_token_id`` fills the padding."""

    file: str
    tokenizer: str
    max_length: int
    padding: str
    pad_token_id: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclass(frozen=True)
class FloorGraph:
    """Each window's log-mel floor (TTMR++): float32 at every precision, since it is the
    frontend alone, which every precision keeps in float32."""

    file: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclass(frozen=True, kw_only=True)
class Int8:
    """``export/quantize.py``'s graphs and how they were made."""

    audio: str
    text: str
    audio_method: str
    calibration: dict | None = None  # static quantisation: its source and window count
    text_method: str
    accuracy: dict | None = None  # cosines to fp32, measured after writing


@dataclass(frozen=True)
class Fp16:
    """``export/fp16.py``'s graphs and what stays in float32."""

    audio: str
    text: str
    float32_ops: tuple[str, ...]
    float32_frontend: bool


@dataclass(frozen=True)
class Engines:
    """``export/to_tensorrt.py``'s engines at one precision and what they accept."""

    audio: str
    text: str
    max_batch: int
    max_tokens: int
    tensorrt: str  # the TensorRT version that built them
    device: str | None  # the GPU they were built on
    floor: str | None = None  # the floor graph's engine, where the model has one


@dataclass(frozen=True, kw_only=True)
class Manifest:
    format: int = FORMAT
    family: str
    random_weights: bool
    note: str
    hparams: dict
    audio: AudioTower
    text: TextTower
    opset: int
    checkpoint: dict
    versions: dict
    floor: FloorGraph | None = None
    int8: Int8 | None = None
    fp16: Fp16 | None = None
    tensorrt: dict[str, Engines] = field(default_factory=dict)

    def tower(self, name: str) -> AudioTower | TextTower | FloorGraph:
        return {"audio": self.audio, "text": self.text, "floor": self.floor}[name]

    @property
    def graphs(self) -> tuple[str, ...]:
        """The graphs of the model: both towers, and ``floor`` where it has one."""
        return TOWERS + (("floor",) if self.floor else ())

    def graph_files(self, precision: str) -> dict[str, str] | None:
        """Each graph's ONNX file at ``precision`` (``fp32``, ``fp16``, ``int8``); None
        where the folder has no graphs at that precision. The floor graph is fp32 always."""
        section = {"fp32": self, "fp16": self.fp16, "int8": self.int8}[precision]
        if section is None:
            return None
        floor = {"floor": self.floor.file} if self.floor else {}
        if precision == "fp32":
            return {tower: self.tower(tower).file for tower in TOWERS} | floor
        return {tower: getattr(section, tower) for tower in TOWERS} | floor

    def replace(self, **changes) -> Manifest:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """The JSON object, in the layout above (optional sections left out when absent)."""
        audio = dataclasses.asdict(self.audio)
        steps = audio.pop("preprocessing")
        rate, window = steps.pop("sample_rate"), steps.pop("window_samples")
        content = {
            "format": self.format,
            "family": self.family,
            "random_weights": self.random_weights,
            "note": self.note,
            "hparams": self.hparams,
            "audio": {
                "file": audio["file"],
                "sample_rate": rate,
                "window_samples": window,
                "preprocessing": steps,
                "inputs": audio["inputs"],
                "outputs": audio["outputs"],
            },
            "text": dataclasses.asdict(self.text),
            **({"floor": dataclasses.asdict(self.floor)} if self.floor else {}),
            "opset": self.opset,
            "checkpoint": self.checkpoint,
            "versions": self.versions,
        }
        if self.int8 is not None:
            int8 = dataclasses.asdict(self.int8)
            content["int8"] = {key: value for key, value in int8.items() if value is not None}
        if self.fp16 is not None:
            content["fp16"] = dataclasses.asdict(self.fp16)
        if self.tensorrt:
            content["tensorrt"] = {
                key: {
                    name: value
                    for name, value in dataclasses.asdict(engines).items()
                    if name != "floor" or value is not None  # no floor engine: left out
                }
                for key, engines in self.tensorrt.items()
            }
        return json.loads(json.dumps(content))  # tuples → lists, as read back

    @classmethod
    def from_json(cls, content: object, path: Path = Path(FILE)) -> Manifest:
        """The manifest of a parsed ``manifest.json``, every part the runtime and the tools
        read checked for its type and range: a ``ModelFolderError`` naming ``path`` and the field
        otherwise."""
        version = need(content, "format", int, path)
        if version != FORMAT:
            side = (
                "export the model again with this version's export/to_onnx.py"
                if version < FORMAT
                else "it was written by a newer exporter: update ttmr-runtime, or export the "
                "model again with this version's export/to_onnx.py"
            )
            raise ModelFolderError(
                f"{path}: manifest format {version}, but this version reads format {FORMAT}: {side}"
            )
        only(content, [f.name for f in dataclasses.fields(cls)], path, "the manifest")
        family = need(content, "family", str, path)
        if not family.isidentifier():
            raise ModelFolderError(f"{path}: family {family!r} is not a family name")
        engines = need(content, "tensorrt", dict, path) if "tensorrt" in content else {}
        return cls(
            format=version,
            family=family,
            random_weights=need(content, "random_weights", bool, path),
            note=need(content, "note", str, path),
            hparams=need(content, "hparams", dict, path),
            audio=read_audio(need(content, "audio", dict, path), path),
            text=read_text(need(content, "text", dict, path), path),
            floor=read_floor(need(content, "floor", dict, path), path)
            if "floor" in content
            else None,
            opset=need(content, "opset", int, path),
            checkpoint=need(content, "checkpoint", dict, path),
            versions=need(content, "versions", dict, path),
            int8=section(content, "int8", Int8, path),
            fp16=section(content, "fp16", Fp16, path),
            tensorrt={key: section(engines, key, Engines, path, "tensorrt") for key in engines},
        )


def read_manifest(model_dir: str | Path) -> Manifest:
    """``model_dir``'s ``manifest.json``, parsed and checked (``Manifest.from_json``)."""
    path = Path(model_dir) / FILE
    if not path.is_file():
        raise ModelFolderError(
            f"model folder {str(model_dir)!r} has no manifest.json: export one with "
            "export/to_onnx.py"
        )
    try:
        content = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path}: not a JSON manifest ({err})") from None
    return Manifest.from_json(content, path)


def manifest_bytes(model_dir: str | Path) -> bytes:
    """``manifest.json`` as written: its hash names the export (weights, graphs, settings)
    that made a catalog's rows."""
    return (Path(model_dir) / FILE).read_bytes()


def write_manifest(model_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest`` as ``model_dir``'s ``manifest.json`` (indented, one trailing
    newline); it is checked by reading it back first, so no tool writes what the runtime
    would refuse."""
    content = manifest.to_json()
    path = Path(model_dir) / FILE
    Manifest.from_json(content, path)
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def read_audio(audio: dict, path: Path) -> AudioTower:
    keys = ("file", "sample_rate", "window_samples", "preprocessing", "inputs", "outputs")
    only(audio, keys, path, "audio")
    inputs, outputs = read_tensors(audio, "audio", path)
    sizes = {key: need(audio, key, int, path, "audio") for key in ("sample_rate", "window_samples")}
    for key, value in sizes.items():
        if value <= 0:
            raise ModelFolderError(f"{path}: audio.{key} must be positive, got {value}")
    try:
        steps = Preprocessing(**sizes, **need(audio, "preprocessing", dict, path, "audio"))
    except TypeError as err:
        raise ModelFolderError(f"{path}: audio.preprocessing is malformed ({err})") from None
    if not isinstance(steps.peak_normalise, bool) or not isinstance(steps.int16, bool):
        raise ModelFolderError(f"{path}: audio.preprocessing flags must be true or false")
    if steps.short_audio not in SHORT_AUDIO:
        raise ModelFolderError(f"{path}: short_audio {steps.short_audio!r} not in {SHORT_AUDIO}")
    return AudioTower(need(audio, "file", str, path, "audio"), steps, inputs, outputs)


def read_text(text: dict, path: Path) -> TextTower:
    only(text, [f.name for f in dataclasses.fields(TextTower)], path, "text")
    inputs, outputs = read_tensors(text, "text", path)
    padding = need(text, "padding", str, path, "text")
    if padding not in TEXT_PADDING:
        raise ModelFolderError(f"{path}: text.padding {padding!r} not in {TEXT_PADDING}")
    max_length = need(text, "max_length", int, path, "text")
    if max_length <= 0:
        raise ModelFolderError(f"{path}: text.max_length must be positive, got {max_length}")
    return TextTower(
        file=need(text, "file", str, path, "text"),
        tokenizer=need(text, "tokenizer", str, path, "text"),
        max_length=max_length,
        padding=padding,
        pad_token_id=need(text, "pad_token_id", int, path, "text"),
        inputs=inputs,
        outputs=outputs,
    )


def read_floor(floor: dict, path: Path) -> FloorGraph:
    only(floor, [f.name for f in dataclasses.fields(FloorGraph)], path, "floor")
    inputs, outputs = read_tensors(floor, "floor", path)
    return FloorGraph(need(floor, "file", str, path, "floor"), inputs, outputs)


def read_tensors(tower: dict, name: str, path: Path) -> tuple[tuple[Tensor, ...], ...]:
    """A graph's ``inputs`` and ``outputs``; every output is ``[batch, width]`` (the floor
    graph's: ``[batch]``)."""
    found = []
    for key in ("inputs", "outputs"):
        where = f"{name}.{key}"
        tensors = []
        for value in need(tower, key, list, path, name):
            shape = need(value, "shape", list, path, where)
            if not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in shape):
                raise ModelFolderError(f"{path}: {where}: shape {shape} is not of ints and names")
            dtype = need(value, "dtype", str, path, where)
            only(value, ["name", "dtype", "shape"], path, where)
            tensors.append(Tensor(need(value, "name", str, path, where), dtype, tuple(shape)))
        found.append(tuple(tensors))
    dims = ["batch"] if name == "floor" else ["batch", "width"]
    for output in found[1]:
        if len(output.shape) != len(dims) or not all(map(positive, output.shape[1:])):
            shape, expected = list(output.shape), ", ".join(dims)
            raise ModelFolderError(f"{path}: {name}.outputs: shape {shape} is not [{expected}]")
    return tuple(found)


def section(content: dict, key: str, kind: type, path: Path, where: str = ""):
    """An optional section read into ``kind``'s fields; None when absent."""
    if key not in content:
        return None
    label = f"{where}.{key}" if where else key
    value = need(content, key, dict, path, where)
    only(value, [f.name for f in dataclasses.fields(kind)], path, label)
    try:
        made = kind(**value)
    except TypeError as err:
        raise ModelFolderError(f"{path}: {label} is malformed ({err})") from None
    if kind is Fp16:
        made = dataclasses.replace(made, float32_ops=tuple(made.float32_ops))
    return made


def only(content: dict, names: list[str], path: Path, label: str) -> None:
    """Refuse fields this format does not have: a typed manifest would drop them."""
    unknown = sorted(set(content) - set(names))
    if unknown:
        raise ModelFolderError(f"{path}: {label}: unknown fields {unknown}")


def need(content: object, key: str, kind: type, path: Path, where: str = "") -> object:
    """``content[key]``, which must be a ``kind`` (a bool is no int here)."""
    label = f"{where}.{key}" if where else key
    if not isinstance(content, dict) or key not in content:
        raise ModelFolderError(f"{path}: incomplete manifest: no {label}")
    value = content[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ModelFolderError(f"{path}: {label} must be a {kind.__name__}, got {value!r}")
    return value


def positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
