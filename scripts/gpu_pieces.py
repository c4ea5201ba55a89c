"""Wheels cut into pieces small enough for one transfer each, and joined back, checked.

    python scripts/gpu_pieces.py split WHEELS PIECES [--max-bytes 60000000]
    python scripts/gpu_pieces.py join PIECES WHEELS

``split`` writes into PIECES (emptied first): each wheel of WHEELS larger than
``--max-bytes`` as ``NAME.000``, ``NAME.001``, … beside the others, the smaller wheels
whole under ``small/``, then ``pieces.sha256`` (every piece and small wheel) and
``wheels.sha256`` (every whole wheel), both in ``sha256sum`` format. ``join`` checks every
piece against ``pieces.sha256``, joins them, checks the wheels against ``wheels.sha256`` and
writes them into WHEELS; a missing or altered piece stops it (exit 1) naming the file.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

MAX_BYTES = 60_000_000  # 60 MB: a piece, the small wheels and the repository fit in 64 MiB
PIECE_SUMS = "pieces.sha256"
WHEEL_SUMS = "wheels.sha256"
SMALL = "small"
BLOCK = 1 << 20


class PieceError(Exception):
    """A piece or a joined wheel is missing or not what the sums say."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_sums(folder: Path, name: str, files: list[Path]) -> None:
    lines = [f"{sha256(path)}  {path.relative_to(folder).as_posix()}\n" for path in files]
    (folder / name).write_text("".join(lines))


def read_sums(path: Path) -> dict[str, str]:
    """``sha256sum`` lines → {relative path: digest}."""
    if not path.is_file():
        raise PieceError(f"{path}: missing (run scripts/gpu_pack.sh, or carry it)")
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    return sums


def split(wheels: Path, pieces: Path, max_bytes: int = MAX_BYTES) -> list[Path]:
    """The wheels of ``wheels`` as pieces of at most ``max_bytes`` in ``pieces``; returns
    the files written (pieces and small wheels)."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise PieceError(f"{wheels}: no wheels")
    if pieces.exists():
        shutil.rmtree(pieces)
    (pieces / SMALL).mkdir(parents=True)
    written = []
    for wheel in found:
        if wheel.stat().st_size <= max_bytes:
            written.append(Path(shutil.copy2(wheel, pieces / SMALL / wheel.name)))
            continue
        with wheel.open("rb") as source:
            index = 0
            while chunk := source.read(max_bytes):
                piece = pieces / f"{wheel.name}.{index:03d}"
                piece.write_bytes(chunk)
                written.append(piece)
                index += 1
    write_sums(pieces, PIECE_SUMS, written)
    write_sums(wheels, WHEEL_SUMS, found)
    shutil.copy2(wheels / WHEEL_SUMS, pieces / WHEEL_SUMS)
    return written


def join(pieces: Path, wheels: Path) -> list[Path]:
    """The wheels, joined from ``pieces`` into ``wheels`` and checked; returns them."""
    piece_sums = read_sums(pieces / PIECE_SUMS)
    wheel_sums = read_sums(pieces / WHEEL_SUMS)
    for name, digest in piece_sums.items():
        path = pieces / name
        if not path.is_file():
            raise PieceError(f"{path}: missing (carry every piece before joining)")
        if sha256(path) != digest:
            raise PieceError(f"{path}: altered in transfer (its sha256 is not the listed one)")
    wheels.mkdir(parents=True, exist_ok=True)
    joined = []
    for name, digest in wheel_sums.items():
        target = wheels / name
        parts = sorted(n for n in piece_sums if n.rpartition(".")[0] == name)
        if f"{SMALL}/{name}" in piece_sums:
            shutil.copy2(pieces / SMALL / name, target)
        elif parts:
            with target.open("wb") as out:
                for part in parts:
                    with (pieces / part).open("rb") as source:
                        shutil.copyfileobj(source, out, BLOCK)
        else:
            raise PieceError(f"{name}: no pieces of it listed in {pieces / PIECE_SUMS}")
        if sha256(target) != digest:
            raise PieceError(f"{target}: joined, but its sha256 is not the listed one")
        joined.append(target)
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="wheels → pieces")
    cut.add_argument("wheels", type=Path)
    cut.add_argument("pieces", type=Path)
    cut.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    glue = commands.add_parser("join", help="pieces → wheels, checked")
    glue.add_argument("pieces", type=Path)
    glue.add_argument("wheels", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "split":
            for path in split(args.wheels, args.pieces, args.max_bytes):
                print(f"{path.stat().st_size / 1e6:8.1f} MB  {path}")
        else:
            for path in join(args.pieces, args.wheels):
                print(f"joined and checked: {path}")
    except PieceError as err:
        print(f"gpu_pieces.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
