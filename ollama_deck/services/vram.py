"""Rough GPU memory estimates for a model: weights + KV cache + runtime overhead.

The aim is a helpful "will this fit?" hint before a multi-gigabyte pull, not an exact
figure: Ollama's own scheduler decides at load time, and its numbers move between releases.
Sizes are in bytes; ``total_gb`` is decimal gigabytes (10^9), the unit ``ollama ps`` and
the Ollama library pages use.
"""

from __future__ import annotations

import math
import re
from typing import Any

# Effective bits per weight of each llama.cpp / GGUF quantization type, as llama.cpp's
# quantize tool reports them for a 7B LLaMA model. K-quants keep some tensors at higher
# precision, so the average is above the nominal bit width. For Q2_K we use the mixed
# figure (3.35) rather than the bare type's 2.63, because a "Q2_K" file keeps attention
# and output tensors at higher precision and its real size is close to the mixed figure.
BITS_PER_WEIGHT: dict[str, float] = {
    "Q2_K": 3.35,
    "Q3_K_S": 3.5,
    "Q3_K_M": 3.91,
    "Q3_K_L": 4.27,
    "Q4_0": 4.55,
    "Q4_1": 5.0,
    "Q4_K_S": 4.58,
    "Q4_K_M": 4.89,
    "Q5_0": 5.5,
    "Q5_1": 6.0,
    "Q5_K_S": 5.54,
    "Q5_K_M": 5.69,
    "Q6_K": 6.56,
    "Q8_0": 8.5,
    "F16": 16.0,
    "BF16": 16.0,
    "F32": 32.0,
}

FALLBACK_QUANTIZATION = "Q4_K_M"

# Ollama's default context window (num_ctx) as of its 2025 releases is 4096 tokens; a
# model is loaded with that unless the request or Modelfile asks for more.
DEFAULT_CONTEXT = 4096

MIB = 1024 * 1024
# Fixed cost of a loaded model on a GPU whatever its size: the CUDA/ROCm context and
# scratch buffers. Ollama itself reserves a minimum of roughly 457 MiB per GPU (its logs
# print it as minimum_memory), so 512 MiB is a round figure just above.
RUNTIME_OVERHEAD_BYTES = 512 * MIB
# The compute graph (activations, the logits of a batch, staging buffers): a base that
# covers the vocabulary-sized output of small models, plus a share of the weights because
# the buffers widen with the model. Ollama's logs show about 0.3 GiB for 3B models and
# about 1 GiB for 70B ones at a 4096 context, which this tracks.
GRAPH_BASE_BYTES = 256 * MIB
GRAPH_SHARE_OF_WEIGHTS = 0.02

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if Ollama sent an object there, else an empty one."""
    return value if isinstance(value, dict) else {}


def estimate_vram(
    *,
    parameter_count: float,
    quantization: str,
    context_length: int = DEFAULT_CONTEXT,
    block_count: int | None = None,
    embedding_length: int | None = None,
    head_count: int | None = None,
    head_count_kv: int | None = None,
    kv_bits: int = 16,
    key_length: int | None = None,
    value_length: int | None = None,
) -> dict[str, Any]:
    """Estimate the memory a model needs fully loaded on a GPU; never raises for odd input.

    KV cache, when the architecture is known:
    ``2 (K and V) * block_count * context * kv_width * kv_bits / 8`` with
    ``kv_width = embedding_length * head_count_kv / head_count`` (grouped-query attention
    stores fewer KV heads than query heads). ``key_length``/``value_length`` (head sizes
    some models declare, e.g. Gemma) replace that width when given.
    """
    assumptions: list[str] = []
    params = max(float(parameter_count or 0), 0.0)
    if params == 0:
        assumptions.append("parameter count unknown: weights not counted")

    quant = (quantization or "").strip().upper()
    bits = BITS_PER_WEIGHT.get(quant)
    if bits is None:
        bits = BITS_PER_WEIGHT[FALLBACK_QUANTIZATION]
        shown = quantization or "none given"
        assumptions.append(
            f"unknown quantization ({shown}): assumed {FALLBACK_QUANTIZATION} ≈ {bits:g} bits"
            " per weight"
        )
    else:
        assumptions.append(f"{quant} ≈ {bits:g} bits per weight")
    weights = params * bits / 8

    context = max(int(context_length or DEFAULT_CONTEXT), 1)
    kv_bytes_per_value = max(kv_bits, 1) / 8
    kv_name = {16: "f16", 8: "q8_0", 4: "q4_0"}.get(kv_bits, f"{kv_bits}-bit")
    assumptions.append(f"context {context} tokens, {kv_name} KV cache")

    kv_width = _kv_width(embedding_length, head_count, head_count_kv, key_length, value_length)
    if block_count and block_count > 0 and kv_width:
        kv_cache = 2 * block_count * context * kv_width * kv_bytes_per_value
        assumptions.append(
            f"KV cache from architecture: {block_count} layers, {kv_width:g} KV values per"
            " token and layer"
        )
    else:
        kv_cache = _kv_cache_from_params(params, context, kv_bytes_per_value)
        if params > 0:
            assumptions.append("KV cache estimated from parameter count (architecture unknown)")

    overhead = RUNTIME_OVERHEAD_BYTES + GRAPH_BASE_BYTES + GRAPH_SHARE_OF_WEIGHTS * weights
    assumptions.append(
        f"runtime overhead: {RUNTIME_OVERHEAD_BYTES // MIB} MiB fixed, compute graph "
        f"{GRAPH_BASE_BYTES // MIB} MiB + {GRAPH_SHARE_OF_WEIGHTS:.0%} of weights"
    )

    total = int(round(weights + kv_cache + overhead))
    return {
        "total_bytes": total,
        "weights_bytes": int(round(weights)),
        "kv_cache_bytes": int(round(kv_cache)),
        "overhead_bytes": int(round(overhead)),
        "total_gb": round(total / 1e9, 1),
        "quantization": quant if quant in BITS_PER_WEIGHT else FALLBACK_QUANTIZATION,
        "context_length": context,
        "assumptions": assumptions,
    }


def estimate_from_show(show: dict[str, Any]) -> dict[str, Any]:
    """Estimate from Ollama's ``/api/show`` answer, using whatever architecture keys it has.

    The context is the smaller of the model's trained context and Ollama's default, since
    Ollama loads models with its default unless asked otherwise. Missing keys never raise:
    each gap falls back to a coarser estimate and is named in ``assumptions``.
    """
    show = show if isinstance(show, dict) else {}
    details: dict[str, Any] = _mapping(show.get("details"))
    info: dict[str, Any] = _mapping(show.get("model_info"))
    arch = info.get("general.architecture")
    prefix = f"{arch}." if isinstance(arch, str) and arch else None

    def arch_int(key: str) -> int | None:
        return _as_int(info.get(prefix + key)) if prefix else None

    notes: list[str] = []
    params = _as_float(info.get("general.parameter_count"))
    if not params:
        params = parse_parameter_size(details.get("parameter_size"))
        if params:
            notes.append("parameter count from the reported parameter size")
    if not params:
        params = 0.0

    model_context = arch_int("context_length")
    if model_context:
        context = min(model_context, DEFAULT_CONTEXT)
        notes.append(f"context = min(model's {model_context}, Ollama's default {DEFAULT_CONTEXT})")
    else:
        context = DEFAULT_CONTEXT
        notes.append(f"model context unknown: Ollama's default {DEFAULT_CONTEXT} used")

    estimate = estimate_vram(
        parameter_count=params,
        quantization=str(details.get("quantization_level") or ""),
        context_length=context,
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=arch_int("attention.head_count_kv"),
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
    )
    estimate["assumptions"] = notes + estimate["assumptions"]
    return estimate


def parse_parameter_size(text: Any) -> float | None:
    """``"3.2B"`` -> 3.2e9, ``"335M"`` -> 3.35e8; None when it is not such a string."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) if text > 0 else None
    if not isinstance(text, str):
        return None
    match = _SIZE_RE.match(text)
    if not match:
        return None
    value = float(match.group(1)) * _SCALE[match.group(2).upper()]
    return value if value > 0 else None


def _kv_width(
    embedding_length: int | None,
    head_count: int | None,
    head_count_kv: int | None,
    key_length: int | None,
    value_length: int | None,
) -> float | None:
    """Values stored per token and layer for K (and as many for V), averaged over K and V."""
    kv_heads = head_count_kv or head_count
    if kv_heads and key_length and value_length:
        return kv_heads * (key_length + value_length) / 2
    if embedding_length and head_count:
        return embedding_length * (kv_heads or head_count) / head_count
    if embedding_length:
        return float(embedding_length)
    return None


def _kv_cache_from_params(params: float, context: int, bytes_per_value: float) -> float:
    """KV cache without the architecture, from the shape of a typical decoder.

    Dense transformers have about ``12 * layers * width**2`` parameters, and common models
    use about one layer per 128 of width (Llama 3 8B: 32 layers, width 4096), so
    ``width ≈ (params * 128 / 12) ** (1/3)``. Recent models use grouped-query attention
    with a KV width of about a quarter of the model width. This overestimates models with
    stronger grouping (Llama 3 70B), which errs on the side of "may not fit".
    """
    if params <= 0:
        return 0.0
    width = (params * 128 / 12) ** (1 / 3)
    layers = max(math.ceil(width / 128), 1)
    kv_width = width / 4
    return 2 * layers * context * kv_width * bytes_per_value


def _as_int(value: Any) -> int | None:
    """GGUF metadata can hold per-layer lists (e.g. head counts); use the largest entry."""
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        value = max(numbers) if numbers else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value > 0 else None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value > 0 else None
