"""Remove what a killed tritonserver leaves behind: its Python-backend stubs (which ignore
SIGTERM, may hang on a dead server and hold hundreds of MB each) and the shared-memory
regions in /dev/shm that they and the server shared. scripts/serve.sh runs it before it
starts a server and after its server has stopped.

    reap_triton.py REPOSITORY

A stub is killed only when it serves a model of REPOSITORY and the tritonserver that
started it (the stub's fifth argument) is gone; a region is removed only when no process
maps it. A live server's stubs and regions are never touched, whoever runs that server.
Standard library only: it runs in the environment of the served models.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

STUB = "triton_python_backend_stub"
SHM = Path("/dev/shm")
REGION = "triton_python_backend_shm_region_"


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def argv(pid: int | str) -> list[str]:
    """The process's arguments; none for a zombie or a process that is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


def orphaned_stubs(repository: Path) -> list[int]:
    """Stubs of REPOSITORY's models whose tritonserver is no longer running."""
    found = []
    for pid in pids():
        args = argv(pid)
        if len(args) > 5 and Path(args[0]).name == STUB:
            server = argv(args[5]) if args[5].isdigit() else []
            ours = Path(args[1]).resolve().is_relative_to(repository)
            if ours and not (server and Path(server[0]).name == "tritonserver"):
                found.append(pid)
    return found


def mapped_regions() -> set[str]:
    """Names of the regions some process maps."""
    names = set()
    for pid in pids():
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names.update(
            line.rsplit("/", 1)[1].split()[0] for line in maps.splitlines() if REGION in line
        )
    return names


def reap(repository: Path, patience: float = 10.0) -> tuple[int, int]:
    """Kill the orphaned stubs, wait for them to go, remove unmapped regions; returns
    how many of each."""
    stubs = orphaned_stubs(repository)
    for pid in stubs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + patience
    while any(argv(pid) for pid in stubs) and time.monotonic() < deadline:
        time.sleep(0.05)
    in_use = mapped_regions()
    removed = 0
    for region in SHM.glob(REGION + "*"):
        if region.name not in in_use:
            region.unlink(missing_ok=True)
            removed += 1
    return len(stubs), removed


def main(args: list[str]) -> int:
    if len(args) != 1:
        print("usage: reap_triton.py REPOSITORY", file=sys.stderr)
        return 2
    stubs, regions = reap(Path(args[0]).resolve())
    if stubs or regions:
        print(
            f"reap_triton.py: killed {stubs} orphaned Python-backend stubs, removed {regions} "
            "shared-memory regions left by a killed server",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
