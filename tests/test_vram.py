"""VRAM estimates against real-world figures.

Reference totals are approximate figures commonly reported by ``ollama ps`` (the SIZE
column, decimal GB) for a fully GPU-offloaded model at Ollama's default 4096-token
context. They vary by Ollama release, driver and GPU, so they are ballpark numbers rather
than exact measurements, and each estimate must land within ±20% of its reference.

The architecture numbers (layers, width, heads, KV heads) are the models' published
configurations, as Ollama's ``/api/show`` returns them in ``model_info``.
"""

from __future__ import annotations

import pytest

from ollama_deck.services.vram import BITS_PER_WEIGHT
from ollama_deck.services.vram import DEFAULT_CONTEXT
from ollama_deck.services.vram import estimate_from_show
from ollama_deck.services.vram import estimate_vram
from ollama_deck.services.vram import parse_parameter_size

TOLERANCE = 0.20
GB = 1e9

# model: (reference GB in `ollama ps`, estimate_vram arguments)
PUBLISHED = {
    "llama3.2:1b (Q8_0)": (
        2.2,
        dict(
            parameter_count=1.24e9,
            quantization="Q8_0",
            block_count=16,
            embedding_length=2048,
            head_count=32,
            head_count_kv=8,
        ),
    ),
    "llama3.2:3b (Q4_K_M)": (
        3.5,
        dict(
            parameter_count=3.21e9,
            quantization="Q4_K_M",
            block_count=28,
            embedding_length=3072,
            head_count=24,
            head_count_kv=8,
        ),
    ),
    "llama3.1:8b (Q4_K_M)": (
        6.2,
        dict(
            parameter_count=8.03e9,
            quantization="Q4_K_M",
            block_count=32,
            embedding_length=4096,
            head_count=32,
            head_count_kv=8,
        ),
    ),
    "mistral:7b (Q4_0)": (
        5.5,
        dict(
            parameter_count=7.25e9,
            quantization="Q4_0",
            block_count=32,
            embedding_length=4096,
            head_count=32,
            head_count_kv=8,
        ),
    ),
    "qwen2.5:14b (Q4_K_M)": (
        10.5,
        dict(
            parameter_count=14.77e9,
            quantization="Q4_K_M",
            block_count=48,
            embedding_length=5120,
            head_count=40,
            head_count_kv=8,
        ),
    ),
    "gemma2:27b (Q4_0)": (
        18.0,
        dict(
            parameter_count=27.23e9,
            quantization="Q4_0",
            block_count=46,
            embedding_length=4608,
            head_count=32,
            head_count_kv=16,
            key_length=128,
            value_length=128,
        ),
    ),
    "llama3.1:70b (Q4_K_M)": (
        44.0,
        dict(
            parameter_count=70.55e9,
            quantization="Q4_K_M",
            block_count=80,
            embedding_length=8192,
            head_count=64,
            head_count_kv=8,
        ),
    ),
}


def _within(actual_bytes: int, reference_gb: float) -> bool:
    return abs(actual_bytes / GB - reference_gb) <= TOLERANCE * reference_gb


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_estimate_with_architecture_matches_published_figures(model):
    reference, arguments = PUBLISHED[model]
    estimate = estimate_vram(**arguments)
    assert _within(estimate["total_bytes"], reference), (model, estimate["total_gb"])
    assert estimate["total_bytes"] == pytest.approx(
        estimate["weights_bytes"] + estimate["kv_cache_bytes"] + estimate["overhead_bytes"],
        abs=2,
    )
    assert estimate["total_gb"] == round(estimate["total_bytes"] / GB, 1)


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_estimate_from_parameters_only_matches_published_figures(model):
    """The catalog knows only parameters and quantization; that must be close enough too."""
    reference, arguments = PUBLISHED[model]
    estimate = estimate_vram(
        parameter_count=arguments["parameter_count"], quantization=arguments["quantization"]
    )
    assert _within(estimate["total_bytes"], reference), (model, estimate["total_gb"])
    assert (
        "KV cache estimated from parameter count (architecture unknown)"
        in (estimate["assumptions"])
    )


def test_weights_follow_bits_per_weight():
    estimate = estimate_vram(parameter_count=8e9, quantization="Q8_0")
    assert estimate["weights_bytes"] == 8e9 * 8.5 / 8
    assert "Q8_0 ≈ 8.5 bits per weight" in estimate["assumptions"]
    # Download sizes on the Ollama library: llama3.1:8b Q4_K_M is 4.9 GB.
    assert estimate_vram(parameter_count=8.03e9, quantization="Q4_K_M")[
        "weights_bytes"
    ] == pytest.approx(4.9e9, rel=0.02)


def test_f16_embedding_model_is_small():
    """nomic-embed-text: 137M parameters in F16 (a 274 MB download), 2048-token context."""
    estimate = estimate_vram(
        parameter_count=136.7e6,
        quantization="F16",
        context_length=2048,
        block_count=12,
        embedding_length=768,
        head_count=12,
        head_count_kv=12,
    )
    assert estimate["weights_bytes"] == pytest.approx(274e6, rel=0.01)
    assert estimate["kv_cache_bytes"] == 2 * 12 * 2048 * 768 * 2
    assert 0.5 * GB < estimate["total_bytes"] < 1.5 * GB


def test_more_context_means_more_kv_cache():
    short = estimate_vram(parameter_count=8e9, quantization="Q4_K_M", context_length=2048)
    long = estimate_vram(parameter_count=8e9, quantization="Q4_K_M", context_length=32768)
    assert long["kv_cache_bytes"] == pytest.approx(16 * short["kv_cache_bytes"], rel=0.001)
    assert long["total_bytes"] > short["total_bytes"]
    assert long["weights_bytes"] == short["weights_bytes"]
    assert "context 32768 tokens, f16 KV cache" in long["assumptions"]


def test_grouped_query_attention_shrinks_kv_cache():
    shape = dict(parameter_count=8e9, quantization="Q4_K_M", block_count=32, embedding_length=4096)
    full = estimate_vram(**shape, head_count=32, head_count_kv=32)
    grouped = estimate_vram(**shape, head_count=32, head_count_kv=8)
    assert grouped["kv_cache_bytes"] * 4 == full["kv_cache_bytes"]
    # Llama 3 8B at 4096 tokens: 32 layers * 1024 values * 2 (K, V) * 2 bytes = 512 MiB.
    assert grouped["kv_cache_bytes"] == 512 * 1024 * 1024


def test_quantized_kv_cache_halves_it():
    shape = dict(
        parameter_count=8e9,
        quantization="Q4_K_M",
        block_count=32,
        embedding_length=4096,
        head_count=32,
        head_count_kv=8,
    )
    f16 = estimate_vram(**shape)
    q8 = estimate_vram(**shape, kv_bits=8)
    assert q8["kv_cache_bytes"] * 2 == f16["kv_cache_bytes"]
    assert "context 4096 tokens, q8_0 KV cache" in q8["assumptions"]


def test_unknown_quantization_falls_back_to_q4_k_m():
    odd = estimate_vram(parameter_count=7e9, quantization="IQ9_WEIRD")
    known = estimate_vram(parameter_count=7e9, quantization="Q4_K_M")
    assert odd["weights_bytes"] == known["weights_bytes"]
    assert any("unknown quantization (IQ9_WEIRD)" in item for item in odd["assumptions"])
    assert odd["quantization"] == "Q4_K_M"


def test_quantization_is_case_insensitive():
    assert estimate_vram(parameter_count=1e9, quantization="q8_0")["weights_bytes"] == 1.0625e9


def test_default_context_is_ollamas():
    assert DEFAULT_CONTEXT == 4096
    estimate = estimate_vram(parameter_count=3e9, quantization="Q4_K_M")
    assert estimate["context_length"] == 4096


def test_zero_parameters_still_gives_an_int():
    estimate = estimate_vram(parameter_count=0, quantization="")
    assert isinstance(estimate["total_bytes"], int)
    assert estimate["weights_bytes"] == 0
    assert estimate["kv_cache_bytes"] == 0
    assert estimate["total_bytes"] == estimate["overhead_bytes"] > 0
    assert "parameter count unknown: weights not counted" in estimate["assumptions"]


def test_bits_per_weight_table_is_ordered_sensibly():
    assert BITS_PER_WEIGHT["Q4_K_M"] == 4.89
    assert BITS_PER_WEIGHT["Q4_0"] < BITS_PER_WEIGHT["Q4_K_M"] < BITS_PER_WEIGHT["Q5_K_M"]
    assert BITS_PER_WEIGHT["Q8_0"] < BITS_PER_WEIGHT["F16"] == BITS_PER_WEIGHT["BF16"]
    assert BITS_PER_WEIGHT["F32"] == 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3.2B", 3.2e9), ("335M", 335e6), ("70.6b", 70.6e9), (" 1.5 B ", 1.5e9), ("7", 7.0)],
)
def test_parse_parameter_size(text, expected):
    assert parse_parameter_size(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", [None, "", "big", "3.2X", "-1B", "0B"])
def test_parse_parameter_size_rejects_junk(text):
    assert parse_parameter_size(text) is None


LLAMA32_3B_SHOW = {
    "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT ...",
    "details": {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    },
    "model_info": {
        "general.architecture": "llama",
        "general.file_type": 15,
        "general.parameter_count": 3212749888,
        "general.quantization_version": 2,
        "llama.attention.head_count": 24,
        "llama.attention.head_count_kv": 8,
        "llama.attention.key_length": 128,
        "llama.attention.layer_norm_rms_epsilon": 0.00001,
        "llama.attention.value_length": 128,
        "llama.block_count": 28,
        "llama.context_length": 131072,
        "llama.embedding_length": 3072,
        "llama.feed_forward_length": 8192,
        "llama.rope.dimension_count": 128,
        "llama.rope.freq_base": 500000,
        "llama.vocab_size": 128256,
    },
    "capabilities": ["completion", "tools"],
}


def test_estimate_from_show_uses_architecture():
    estimate = estimate_from_show(LLAMA32_3B_SHOW)
    # 2 * 28 layers * 4096 tokens * (8 KV heads * 128) * 2 bytes = 448 MiB
    assert estimate["kv_cache_bytes"] == 448 * 1024 * 1024
    assert estimate["weights_bytes"] == round(3212749888 * 4.89 / 8)
    assert estimate["context_length"] == 4096
    assert "context = min(model's 131072, Ollama's default 4096)" in estimate["assumptions"]
    assert any(item.startswith("KV cache from architecture") for item in estimate["assumptions"])
    assert _within(estimate["total_bytes"], 3.5)


def test_estimate_from_show_short_context_model():
    show = {
        "details": {"parameter_size": "137M", "quantization_level": "F16"},
        "model_info": {
            "general.architecture": "nomic-bert",
            "general.parameter_count": 136727040,
            "nomic-bert.block_count": 12,
            "nomic-bert.context_length": 2048,
            "nomic-bert.embedding_length": 768,
            "nomic-bert.attention.head_count": 12,
        },
    }
    estimate = estimate_from_show(show)
    assert estimate["context_length"] == 2048
    # No head_count_kv: every head stores K and V.
    assert estimate["kv_cache_bytes"] == 2 * 12 * 2048 * 768 * 2


def test_estimate_from_show_falls_back_to_parameter_size():
    estimate = estimate_from_show(
        {"details": {"parameter_size": "8.0B", "quantization_level": "Q4_K_M"}}
    )
    assert estimate["weights_bytes"] == round(8e9 * 4.89 / 8)
    assert "parameter count from the reported parameter size" in estimate["assumptions"]
    assert (
        "KV cache estimated from parameter count (architecture unknown)"
        in (estimate["assumptions"])
    )
    assert estimate["context_length"] == 4096


@pytest.mark.parametrize("show", [{}, {"details": None, "model_info": None}, None, {"x": 1}])
def test_estimate_from_show_never_raises(show):
    estimate = estimate_from_show(show)
    assert isinstance(estimate["total_bytes"], int)
    assert estimate["total_bytes"] > 0
    assert "parameter count unknown: weights not counted" in estimate["assumptions"]


def test_estimate_from_show_tolerates_per_layer_lists():
    show = {
        "details": {"quantization_level": "Q4_K_M"},
        "model_info": {
            "general.architecture": "odd",
            "general.parameter_count": 1e9,
            "odd.block_count": 10,
            "odd.embedding_length": 1000,
            "odd.attention.head_count": [10, 10, 10],
            "odd.attention.head_count_kv": [2, 5, 2],
        },
    }
    estimate = estimate_from_show(show)
    # The largest per-layer KV head count is used, so the estimate errs high.
    assert estimate["kv_cache_bytes"] == 2 * 10 * 4096 * 500 * 2
