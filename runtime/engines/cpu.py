"""What this processor is, and which of its instruction sets decide which precisions have
hardware behind them: bf16 units (AMX-BF16, AVX-512-BF16) and int8 dot products (AMX-INT8,
AVX-512 VNNI, AVX-VNNI). Read from ``/proc/cpuinfo``; elsewhere only the machine's kind."""

from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path

# The flags that speed each precision up, as /proc/cpuinfo spells them, with their names.
BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX-512-BF16"}
INT8_FLAGS = {"amx_int8": "AMX-INT8", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI"}
VECTOR_FLAGS = {"avx512f": "AVX-512", "avx2": "AVX2"}


@functools.cache
def cpuinfo() -> tuple[str, frozenset[str]]:
    """The first processor's model name and flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() or "unknown CPU", frozenset()
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    return (
        name.group(1).strip() if name else platform.machine(),
        frozenset(flags.group(1).split()) if flags else frozenset(),
    )


def named_flags(table: dict[str, str]) -> list[str]:
    """The names of the flags of ``table`` this CPU has."""
    flags = cpuinfo()[1]
    return [name for flag, name in table.items() if flag in flags]


def describe_cpu() -> str:
    """One line for benchmarks and logs: model, cores and the flags that matter here, e.g.
    ``Intel Xeon …, 2 cores, AVX-512, AMX-BF16, AMX-INT8, AVX-512 VNNI``."""
    features = named_flags(VECTOR_FLAGS)[:1] + named_flags(BF16_FLAGS) + named_flags(INT8_FLAGS)
    return ", ".join([cpuinfo()[0], f"{os.cpu_count()} cores", *features])
