"""Model knowledge for the page and API: details of an installed model, the catalog with
installed flags, and whether each would fit the GPU."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ..errors import DeckError
from ..errors import ModelNotFound
from ..errors import NotFound
from ..errors import OllamaTimeout
from ..errors import OllamaUnavailable
from .catalog import catalog_entry_json
from .catalog import CatalogFamily
from .catalog import CatalogTag
from .catalog import load_catalog
from .catalog import search_catalog
from .gpu import detect_gpus
from .gpu import fits
from .gpu import Gpu
from .gpu import gpu_summary
from .names import DEFAULT_HOST
from .names import DEFAULT_NAMESPACE
from .names import parse_model_name
from .ollama import OllamaClient
from .vram import estimate_from_show
from .vram import estimate_vram

GPU_REFRESH_SECONDS = 60.0
LICENSE_SUMMARY_CHARS = 300


class GpuCache:
    """GPUs from nvidia-smi, asked at most once a minute (it takes tens of milliseconds)."""

    def __init__(self, detect: Callable[[], list[Gpu]] = detect_gpus) -> None:
        self._detect = detect
        self._lock = threading.Lock()
        self._gpus: list[Gpu] = []
        self._when = -GPU_REFRESH_SECONDS

    def get(self) -> list[Gpu]:
        with self._lock:
            if time.monotonic() - self._when >= GPU_REFRESH_SECONDS:
                self._gpus = self._detect()
                self._when = time.monotonic()
            return self._gpus


def model_details(
    client: OllamaClient,
    name: str,
    gpus: list[Gpu],
    cached: Callable[[str], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """What Ollama's show says of an installed model, plus the VRAM estimate and fit.

    When Ollama is down or slow, what the cached model list knows (``cached`` finds the
    entry by name), marked ``stale``; no cached entry, the Ollama error.
    """
    model = parse_model_name(name)
    stale, error = False, None
    try:
        show = client.show(model.display)
    except ModelNotFound as exc:
        raise NotFound(f"{model.display} is not installed", code="model_not_found") from exc
    except (OllamaUnavailable, OllamaTimeout) as exc:
        entry = cached(model.key) if cached is not None else None
        if entry is None:
            raise
        show = {"details": entry.get("details") or {}, "modified_at": entry.get("modified_at")}
        stale, error = True, exc.message
    details = show.get("details") or {}
    info = show.get("model_info") or {}
    arch = info.get("general.architecture")
    license_text = (show.get("license") or "").strip()
    estimate = estimate_from_show(show)
    return {
        "name": model.display,
        "family": details.get("family"),
        "parameter_size": details.get("parameter_size"),
        "quantization": details.get("quantization_level"),
        "format": details.get("format"),
        "context_length": info.get(f"{arch}.context_length") if arch else None,
        "capabilities": show.get("capabilities") or [],
        "license_summary": _summary(license_text),
        "license": license_text,
        "template": show.get("template") or "",
        "parameters": show.get("parameters") or "",
        "modified_at": show.get("modified_at"),
        "details": details,
        "vram": estimate,
        "fits": fits(estimate["total_bytes"], gpus),
        "gpu": gpu_summary(gpus),
        "stale": stale,
        "error": error,
    }


class InstalledEstimates:
    """The VRAM estimate of each installed model, as its details give it, by digest.

    The catalog shows the same figure as the details drawer for a model that is installed:
    both are ``estimate_from_show`` of Ollama's show answer, which knows the model's real
    architecture (the catalog alone knows only parameters and quantization). A digest
    names one exact model, so its estimate never changes: each is asked of Ollama once
    per process (the newest ``limit`` kept).
    """

    def __init__(self, client: OllamaClient, limit: int = 256) -> None:
        self._client = client
        self._limit = limit
        self._lock = threading.Lock()
        self._by_digest: dict[str, dict[str, Any]] = {}

    def get(self, name: str, digest: str, *, ask: bool = True) -> dict[str, Any] | None:
        """The estimate of the installed ``name`` whose manifest is ``digest``; None when
        not known and Ollama is not to be asked (``ask``) or does not answer (the caller
        falls back to the catalog's figure)."""
        with self._lock:
            found = self._by_digest.get(digest)
        if found is not None or not ask:
            return found
        try:
            estimate = estimate_from_show(self._client.show(name))
        except DeckError:
            return None
        with self._lock:
            if len(self._by_digest) >= self._limit:
                self._by_digest.pop(next(iter(self._by_digest)))
            self._by_digest[digest] = estimate
        return estimate


def catalog_listing(
    *,
    category: str | None,
    query: str | None,
    installed: set[str],
    gpus: list[Gpu],
    installed_vram: Callable[[str], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The curated catalog, filtered, with installed flags and a VRAM estimate per tag.

    ``installed_vram`` gives the estimate of an installed model by its key (the details'
    figure, see InstalledEstimates); other tags are estimated from the catalog's figures.
    """
    families = search_catalog(load_catalog(), category=category, query=query)
    largest = max((g.total_bytes for g in gpus), default=None)

    def vram_of(family: CatalogFamily) -> Callable[[CatalogTag], dict[str, Any]]:
        def vram(tag: CatalogTag) -> dict[str, Any]:
            key = family.model_name(tag).lower()
            found = installed_vram(key) if installed_vram and key in installed else None
            return found or _tag_vram(tag)

        return vram

    return {
        "families": [
            catalog_entry_json(
                family, installed=installed, vram_for=vram_of(family), gpu_total_bytes=largest
            )
            for family in families
        ],
        "gpu": gpu_summary(gpus),
    }


def pull_estimate(name: str, gpus: list[Gpu], *, warn_bytes: int) -> dict[str, Any]:
    """What a pull of ``name`` will take, from the catalog: download size, VRAM, fit.

    ``warn`` says the page should ask before pulling: the model does not fit the largest
    known GPU or, with no GPU known, its estimate is over ``warn_bytes``. A name the
    catalog does not know has no estimate and no warning.
    """
    model = parse_model_name(name)
    found = _catalog_tag(model.model, model.tag, model.namespace, model.host)
    summary = gpu_summary(gpus)
    answer: dict[str, Any] = {
        "model": model.display,
        "known": found is not None,
        "size_bytes": None,
        "vram": None,
        "fits": None,
        "gpu": summary,
        "warn": False,
        "reason": None,
        "warn_bytes": warn_bytes,
    }
    if found is None:
        return answer
    vram = _tag_vram(found)
    fit = fits(vram["total_bytes"], gpus)
    answer.update(size_bytes=found.size_bytes, vram=vram, fits=fit)
    if fit is False:
        answer.update(warn=True, reason="too_big_for_gpu")
    elif fit is None and vram["total_bytes"] > warn_bytes:
        answer.update(warn=True, reason="over_threshold")
    return answer


def _catalog_tag(family: str, tag: str, namespace: str, host: str) -> CatalogTag | None:
    """The catalog's entry for a library model; ``latest`` is the family's recommended tag."""
    if namespace != DEFAULT_NAMESPACE or host != DEFAULT_HOST:
        return None
    for entry in load_catalog():
        if entry.name.lower() != family.lower():
            continue
        wanted = entry.recommended if tag.lower() == "latest" else tag
        return next((t for t in entry.tags if t.name.lower() == wanted.lower()), None)
    return None


@lru_cache(maxsize=1024)
def _tag_vram(tag: CatalogTag) -> dict[str, Any]:
    """A catalog tag's estimate at Ollama's default context: parameters and quantization only."""
    return estimate_vram(parameter_count=tag.parameter_count, quantization=tag.quantization)


def _summary(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > LICENSE_SUMMARY_CHARS:
        first = first[: LICENSE_SUMMARY_CHARS - 1].rstrip() + "…"
    return first
