"""The shape of the code: no import cycles in ``export/`` or ``runtime/``, a runtime that
never imports the exporter, one reader and writer of ``manifest.json``, commands that never
name a model family (a family is its own package plus one line in the registry), and a
runtime in packages whose backends only ``runtime/engines/`` knows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from export.families import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("export", "runtime")
# What a family may not be named in: the commands, the registry's users, the runtime.
FAMILY_NEUTRAL = [
    *(ROOT / "export" / f"{name}.py" for name in ("to_onnx", "quantize", "fp16")),
    *(ROOT / "export" / f"{name}.py" for name in ("to_tensorrt", "to_triton")),
    *sorted((ROOT / "export" / "triton_models").glob("*.py")),
    *sorted((ROOT / "runtime").rglob("*.py")),
    *(ROOT / "scripts" / f"{name}.py" for name in ("bench", "bench_rows")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "triton_models" not in path.parts  # loaded by Triton as model.py, not imported
    }


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


@pytest.mark.parametrize("package", ["export", "runtime"])
def test_no_import_cycles(package):
    graph = {
        name: {other for other in targets if other.startswith(f"{package}.")}
        for name, targets in import_graph().items()
        if name.startswith(f"{package}.") or name == package
    }
    assert cycles(graph) == []


def test_the_runtime_never_imports_the_exporter():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("runtime"):
            assert not [t for t in targets if t.startswith("export")], name


def test_the_manifest_module_needs_only_the_standard_library():
    """runtime/manifest.py is imported by the runtime and the exporter alike."""
    tree = ast.parse((ROOT / "runtime" / "manifest.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "dataclasses", "json", "pathlib", "runtime"}


MANIFEST_IO = re.compile(r"manifest\.json['\"]\)?\.(read|write)_|json\.(loads|dumps)\(\s*manifest")


def test_only_the_manifest_module_reads_or_writes_manifest_json():
    sources = [*modules().values(), *sorted((ROOT / "export" / "triton_models").glob("*.py"))]
    sources += sorted((ROOT / "scripts").glob("*.py"))
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if path.name != "manifest.py" and MANIFEST_IO.search(path.read_text())
    ]
    assert offenders == []


def code_strings(tree: ast.AST) -> list[str]:
    """The string constants of ``tree``, docstrings aside."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("path", FAMILY_NEUTRAL, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_and_runtime_never_name_a_family(path):
    """No string in their code (docstrings aside) is a family's name, and no import is of a
    family's package (``export.<name>``)."""
    tree = ast.parse(path.read_text())
    named = [value for value in code_strings(tree) if value in REGISTRY]
    imported = [
        name
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]
    named += [name for name in imported if name.split(".")[:2] in (["export", f] for f in REGISTRY)]
    assert named == []


def test_each_family_is_one_package_and_one_registry_line():
    for name, module in REGISTRY.items():
        assert module == f"export.{name}.family"
        assert (ROOT / "export" / name / "family.py").is_file()
    registry = (ROOT / "export" / "families.py").read_text()
    for name in REGISTRY:
        assert (
            len(re.findall(rf"^\s+\"{name}\": \"export\.{name}\.family\",$", registry, re.M)) == 1
        )


# At most this many modules directly in runtime/; the rest is in packages named for their part.
TOP_MODULES = 10
RUNTIME_PACKAGES = ("engines", "audio", "catalog", "cli")
BACKEND_LIBRARIES = {"onnxruntime", "openvino", "tensorrt", "cuda"}


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module ``tree`` imports, at any depth (``a.b`` of ``from a.b import c``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_runtime_top_holds_at_most_ten_modules_and_its_parts_are_packages():
    top = sorted(path.name for path in (ROOT / "runtime").glob("*.py"))
    assert len(top) <= TOP_MODULES, top
    for name in RUNTIME_PACKAGES:
        assert (ROOT / "runtime" / name / "__init__.py").is_file(), name


def test_the_embedder_names_no_session_class_and_no_backend():
    """What differs between backends is behind ``runtime.engines``' interface."""
    sessions = {
        node.name
        for path in sorted((ROOT / "runtime" / "engines").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith("Session")
    }
    assert {"Session", "OnnxRuntimeSession", "OpenVINOSession", "TensorRTSession"} <= sessions
    tree = ast.parse((ROOT / "runtime" / "embedder.py").read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert names & sessions == set()
    backends = {"onnxruntime", "openvino", "tensorrt"}
    assert [s for s in code_strings(tree) if s.lower() in backends] == []
    backend_modules = {f"runtime.engines.{name}" for name in backends}
    assert imported_modules(tree) & (backend_modules | BACKEND_LIBRARIES) == set()


def test_only_the_engines_package_imports_a_backend_library():
    offenders = [
        (str(path.relative_to(ROOT)), name)
        for path in sorted((ROOT / "runtime").rglob("*.py"))
        if "engines" not in path.relative_to(ROOT / "runtime").parts[:1]
        for name in imported_modules(ast.parse(path.read_text()))
        if name.split(".")[0] in BACKEND_LIBRARIES
    ]
    assert offenders == []
