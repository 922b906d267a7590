"""The GPUs on this machine (NVIDIA, through nvidia-smi) and whether a model fits them.

Detection is best effort: a machine without nvidia-smi, a broken driver or a hung tool all
mean "no GPU known", never an error, since the deck works fine without the hint.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

NVIDIA_SMI_COMMAND = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
]
NVIDIA_SMI_TIMEOUT = 5.0
MIB = 1024 * 1024

# GPU memory is sold in binary units (a "24 GB" card has 24 GiB), so GB and GiB both mean
# 2**30 here; the same for KB/MB/TB.
_MEMORY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_BINARY = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int | None


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free`` CSV (MiB).

    Lines that cannot be read, or whose total memory is unknown ("[N/A]"), are skipped;
    an unknown free figure is kept as None.
    """
    gpus: list[Gpu] = []
    for line in (output or "").splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 4:
            continue
        # A GPU name could in theory contain a comma: index first, the two numbers last.
        index_text, total_text, free_text = fields[0], fields[-2], fields[-1]
        name = ", ".join(fields[1:-2]).strip()
        index = _to_int(index_text)
        total_mib = _to_number(total_text)
        if index is None or total_mib is None or total_mib <= 0:
            continue
        free_mib = _to_number(free_text)
        gpus.append(
            Gpu(
                index=index,
                name=name or f"GPU {index}",
                total_bytes=int(total_mib * MIB),
                free_bytes=int(free_mib * MIB) if free_mib is not None and free_mib >= 0 else None,
            )
        )
    return gpus


def detect_gpus(
    run: Callable[..., Any] = subprocess.run, configured_bytes: int | None = None
) -> list[Gpu]:
    """The GPUs here, or ``[]`` when none can be found; never raises.

    ``configured_bytes`` (the ``OLLAMA_DECK_GPU_MEMORY`` setting) overrides detection with
    a single GPU named "configured". It is for a deck that runs on a different machine
    from Ollama, where the local nvidia-smi would describe the wrong hardware (or none).
    """
    if configured_bytes:
        return [Gpu(index=0, name="configured", total_bytes=configured_bytes, free_bytes=None)]
    try:
        result = run(
            NVIDIA_SMI_COMMAND,
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        # FileNotFoundError (no tool) is an OSError; TimeoutExpired a SubprocessError.
        log.debug("nvidia-smi unavailable: %s", exc)
        return []
    if getattr(result, "returncode", 1) != 0:
        log.debug("nvidia-smi exited with %s", getattr(result, "returncode", None))
        return []
    stdout = getattr(result, "stdout", "") or ""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    return parse_nvidia_smi(stdout)


def fits(total_bytes: int | None, gpus: list[Gpu]) -> bool | None:
    """Whether a model needing ``total_bytes`` fits the largest single GPU; None if unknown.

    Ollama can split a model's layers across several GPUs, but each GPU then carries its own
    buffers and the split is slower; comparing with one GPU keeps the hint conservative and
    matches what the catalog listing uses.
    """
    if total_bytes is None or not gpus:
        return None
    return total_bytes <= max(gpu.total_bytes for gpu in gpus)


def gpu_summary(gpus: list[Gpu]) -> dict[str, Any]:
    """JSON-ready view of the GPUs; ``total_bytes`` is the largest GPU's memory."""
    return {
        "known": bool(gpus),
        "gpus": [
            {
                "index": gpu.index,
                "name": gpu.name,
                "total_bytes": gpu.total_bytes,
                "free_bytes": gpu.free_bytes,
            }
            for gpu in gpus
        ],
        "total_bytes": max((gpu.total_bytes for gpu in gpus), default=None),
    }


def parse_memory(text: str) -> int | None:
    """``"24GB"``/``"24 GiB"`` -> 24 * 2**30, ``"24576MiB"``, ``"25769803776"``; else None."""
    match = _MEMORY_RE.match(text or "")
    if not match:
        return None
    value = int(float(match.group(1)) * _BINARY[match.group(2).upper()])
    return value if value > 0 else None


def _to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _to_number(text: str) -> float | None:
    """A MiB figure; "[N/A]", "N/A" and other non-numbers are unknown."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
