"""GPU detection from nvidia-smi output, its failure modes, and the fit check."""

from __future__ import annotations

import subprocess

import pytest

from ollama_deck.config import DeckSettings
from ollama_deck.config import SettingError
from ollama_deck.services.gpu import detect_gpus
from ollama_deck.services.gpu import fits
from ollama_deck.services.gpu import Gpu
from ollama_deck.services.gpu import gpu_summary
from ollama_deck.services.gpu import NVIDIA_SMI_COMMAND
from ollama_deck.services.gpu import parse_memory
from ollama_deck.services.gpu import parse_nvidia_smi

MIB = 1024 * 1024
GIB = 1024 * MIB

ONE_GPU = "0, NVIDIA GeForce RTX 4090, 24564, 23012\n"
TWO_GPUS = """0, NVIDIA GeForce RTX 3090, 24576, 1200
1, NVIDIA GeForce RTX 3060, 12288, 11999

"""


@pytest.fixture(autouse=True)
def _no_configured_memory(monkeypatch):
    monkeypatch.delenv("OLLAMA_DECK_GPU_MEMORY", raising=False)


def test_parse_one_gpu():
    assert parse_nvidia_smi(ONE_GPU) == [
        Gpu(
            index=0, name="NVIDIA GeForce RTX 4090", total_bytes=24564 * MIB, free_bytes=23012 * MIB
        )
    ]


def test_parse_two_gpus_and_blank_lines():
    gpus = parse_nvidia_smi(TWO_GPUS)
    assert [(g.index, g.name) for g in gpus] == [
        (0, "NVIDIA GeForce RTX 3090"),
        (1, "NVIDIA GeForce RTX 3060"),
    ]
    assert gpus[1].total_bytes == 12288 * MIB
    assert gpus[0].free_bytes == 1200 * MIB


def test_parse_not_available_values():
    output = "0, NVIDIA A100-SXM4-40GB, 40960, [N/A]\n1, Some vGPU, [N/A], [N/A]\n"
    gpus = parse_nvidia_smi(output)
    # Unknown free memory is kept as None; unknown total memory makes the GPU useless here.
    assert gpus == [
        Gpu(index=0, name="NVIDIA A100-SXM4-40GB", total_bytes=40960 * MIB, free_bytes=None)
    ]


def test_parse_skips_garbage():
    output = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
        "index, name, memory.total [MiB], memory.free [MiB]\n"
        "x, broken, 1, 2\n"
        "0, Tesla T4, 15360, 15000\n"
        "1, Zero, 0, 0\n"
        "just, three, fields\n"
    )
    assert parse_nvidia_smi(output) == [
        Gpu(index=0, name="Tesla T4", total_bytes=15360 * MIB, free_bytes=15000 * MIB)
    ]


def test_parse_empty():
    assert parse_nvidia_smi("") == []
    assert parse_nvidia_smi("\n \n") == []


class FakeRun:
    """Stands in for subprocess.run and records how it was called."""

    def __init__(self, *, stdout: str = "", returncode: int = 0, error: Exception | None = None):
        self.stdout = stdout
        self.returncode = returncode
        self.error = error
        self.calls: list[tuple[list[str], dict]] = []

    def __call__(self, command, **kwargs):
        self.calls.append((command, kwargs))
        if self.error is not None:
            raise self.error
        return subprocess.CompletedProcess(command, self.returncode, self.stdout, "")


def test_detect_runs_nvidia_smi_with_timeout():
    run = FakeRun(stdout=TWO_GPUS)
    gpus = detect_gpus(run=run)
    assert len(gpus) == 2
    command, kwargs = run.calls[0]
    assert command == NVIDIA_SMI_COMMAND
    assert command[1] == "--query-gpu=index,name,memory.total,memory.free"
    assert command[2] == "--format=csv,noheader,nounits"
    assert kwargs["timeout"] == 5
    assert kwargs["capture_output"] is True


def test_detect_without_the_tool():
    run = FakeRun(error=FileNotFoundError(2, "No such file or directory", "nvidia-smi"))
    assert detect_gpus(run=run) == []


def test_detect_nonzero_exit():
    run = FakeRun(stdout="NVIDIA-SMI has failed", returncode=9)
    assert detect_gpus(run=run) == []


def test_detect_timeout():
    run = FakeRun(error=subprocess.TimeoutExpired(NVIDIA_SMI_COMMAND, 5))
    assert detect_gpus(run=run) == []


def test_detect_permission_error():
    assert detect_gpus(run=FakeRun(error=PermissionError("denied"))) == []


def test_detect_bytes_output():
    class BytesRun(FakeRun):
        def __call__(self, command, **kwargs):
            return subprocess.CompletedProcess(command, 0, ONE_GPU.encode(), b"")

    assert detect_gpus(run=BytesRun())[0].total_bytes == 24564 * MIB


@pytest.mark.parametrize(
    ("value", "expected"),
    [("24GB", 24 * GIB), ("24 GiB", 24 * GIB), ("24576MiB", 24 * GIB), ("25769803776", 24 * GIB)],
)
def test_configured_memory_overrides_detection(monkeypatch, value, expected):
    monkeypatch.setenv("OLLAMA_DECK_GPU_MEMORY", value)
    configured = DeckSettings.from_config({}).gpu_memory
    run = FakeRun(error=AssertionError("nvidia-smi must not run"))
    assert detect_gpus(run=run, configured_bytes=configured) == [
        Gpu(index=0, name="configured", total_bytes=expected, free_bytes=None)
    ]
    assert run.calls == []


def test_invalid_configured_memory_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("OLLAMA_DECK_GPU_MEMORY", "lots")
    with pytest.raises(SettingError, match="OLLAMA_DECK_GPU_MEMORY='lots' is not valid"):
        DeckSettings.from_config({})


@pytest.mark.parametrize("text", ["", "lots", "0GB", "-1GB", "12 parsecs"])
def test_parse_memory_rejects_junk(text):
    assert parse_memory(text) is None


def test_fits():
    gpus = parse_nvidia_smi(TWO_GPUS)
    assert fits(None, gpus) is None
    assert fits(10 * GIB, []) is None
    assert fits(20 * GIB, gpus) is True
    assert fits(24576 * MIB, gpus) is True
    # Needs more than the largest GPU, though less than both together: no split assumed.
    assert fits(30 * GIB, gpus) is False


def test_gpu_summary():
    gpus = parse_nvidia_smi(TWO_GPUS)
    summary = gpu_summary(gpus)
    assert summary["known"] is True
    assert summary["total_bytes"] == 24576 * MIB
    assert summary["gpus"][1] == {
        "index": 1,
        "name": "NVIDIA GeForce RTX 3060",
        "total_bytes": 12288 * MIB,
        "free_bytes": 11999 * MIB,
    }
    assert gpu_summary([]) == {"known": False, "gpus": [], "total_bytes": None}
