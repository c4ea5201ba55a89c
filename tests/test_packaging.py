"""The project as a user installs it: a wheel, used away from this source tree."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.to_triton import fill_repository

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "runtime", "export")
CACHES = shutil.ignore_patterns("__pycache__")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def files_of(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links followed): relative path → SHA-256 of its content."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def pip(*args: str) -> None:
    done = subprocess.run([*PIP, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder holding the wheel's packages (no dependencies: .venv has them). The wheel is
    built from a copy of what the build reads, so no earlier build/ output ends up in it."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=CACHES)
        else:
            shutil.copyfile(ROOT / name, source / name)
    wheels = tmp_path_factory.mktemp("wheels")
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source))
    (wheel,) = wheels.glob("*.whl")
    target = tmp_path_factory.mktemp("site-packages")
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    return target


def test_to_triton_from_the_installed_wheel_writes_a_complete_repository(
    installed, small_model_dir, tmp_path
):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    # .venv also has this checkout installed (editable): the wheel's copy must be what runs.
    where = subprocess.run(
        [sys.executable, "-c", "import export, runtime; print(export.__file__, runtime.__file__)"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(Path(f).is_relative_to(installed) for f in where.stdout.split()), where.stdout
    repository = tmp_path / "repository"
    args = ["--model-dir", str(small_model_dir), "--repository", str(repository)]
    run = subprocess.run(
        [sys.executable, "-m", "export.to_triton", *args, "--backend", "python"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    fill_repository(small_model_dir, tmp_path / "expected", "python")
    assert files_of(repository) == files_of(tmp_path / "expected")
