"""The GPU run's preparation, proven on this CPU: the wheels cut into pieces and joined back
(scripts/gpu_pieces.py, on stand-in wheels of a few kB, not the 255 MB download), and
scripts/gpu_check.sh run end to end without a GPU on the small model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
# scripts/ is not a package
from gpu_pieces import PIECE_SUMS, SMALL, WHEEL_SUMS, PieceError, join, split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def wheels(tmp_path) -> Path:
    """One 'big' wheel of 10 000 random bytes and two small ones."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    rng = np.random.default_rng(0)
    (folder / "big-1.0-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(rng.bytes(10_000))
    (folder / "tiny-2.0-py3-none-any.whl").write_bytes(rng.bytes(300))
    (folder / "exact-3.0-py3-none-any.whl").write_bytes(rng.bytes(4_000))
    return folder


def test_pieces_are_at_most_the_limit_and_join_back_into_the_same_wheels(wheels, tmp_path):
    pieces = tmp_path / "pieces"
    written = split(wheels, pieces, max_bytes=4_000)
    big = "big-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert sorted(p.name for p in pieces.glob(f"{big}.*")) == [f"{big}.{i:03d}" for i in range(3)]
    assert {p.name for p in (pieces / SMALL).iterdir()} == {
        "tiny-2.0-py3-none-any.whl",
        "exact-3.0-py3-none-any.whl",
    }
    assert max(p.stat().st_size for p in written) <= 4_000
    listed = (pieces / PIECE_SUMS).read_text().splitlines()
    assert len(listed) == len(written) == 5
    for folder, sums in ((pieces, PIECE_SUMS), (wheels, WHEEL_SUMS)):  # sha256sum reads them
        done = subprocess.run(["sha256sum", "--check", sums], cwd=folder, capture_output=True)
        assert done.returncode == 0, done.stdout
    joined = join(pieces, tmp_path / "joined")
    assert sorted(p.name for p in joined) == sorted(p.name for p in wheels.glob("*.whl"))
    for path in joined:
        assert path.read_bytes() == (wheels / path.name).read_bytes()


def test_split_twice_leaves_the_same_pieces_and_no_stale_ones(wheels, tmp_path):
    pieces = tmp_path / "pieces"
    split(wheels, pieces, max_bytes=1_000)
    first = {p.relative_to(pieces): p.read_bytes() for p in pieces.rglob("*") if p.is_file()}
    split(wheels, pieces, max_bytes=4_000)
    split(wheels, pieces, max_bytes=1_000)
    again = {p.relative_to(pieces): p.read_bytes() for p in pieces.rglob("*") if p.is_file()}
    assert again == first


def test_a_missing_or_altered_piece_stops_the_join_naming_it(wheels, tmp_path):
    pieces = tmp_path / "pieces"
    split(wheels, pieces, max_bytes=4_000)
    big = next(pieces.glob("big-*.001"))
    data = bytearray(big.read_bytes())
    data[7] ^= 1
    big.write_bytes(bytes(data))
    with pytest.raises(PieceError, match=r"\.001: altered in transfer"):
        join(pieces, tmp_path / "joined")
    big.unlink()
    with pytest.raises(PieceError, match=r"\.001: missing"):
        join(pieces, tmp_path / "joined")


def test_the_command_line_splits_and_joins(wheels, tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "gpu_pieces.py")]
    pieces, joined = tmp_path / "pieces", tmp_path / "joined"
    cut = subprocess.run([*script, "split", str(wheels), str(pieces), "--max-bytes", "3000"])
    assert cut.returncode == 0
    glued = subprocess.run([*script, "join", str(pieces), str(joined)], capture_output=True)
    assert glued.returncode == 0 and glued.stdout.count(b"joined and checked") == 3
    (pieces / PIECE_SUMS).unlink()
    refused = subprocess.run([*script, "join", str(pieces), str(joined)], capture_output=True)
    assert refused.returncode == 1 and b"pieces.sha256: missing" in refused.stderr
