"""The curated model catalog: popular families from Ollama's library with their tags.

The list lives in ``ollama_deck/data/catalog.toml`` so it can be edited by hand; this module
reads it, checks every entry (a typo should fail loudly at start-up, not show a broken
card), and filters and serialises it for the API.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .names import InvalidModelName
from .names import parse_model_name
from .vram import BITS_PER_WEIGHT
from .vram import parse_parameter_size

CATEGORIES: tuple[str, ...] = ("chat", "code", "vision", "embedding", "reasoning")
LIBRARY_URL = "https://ollama.com/library/"

# The Ollama library shows download sizes in decimal units ("4.9GB" = 4.9e9 bytes).
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B)\s*$", re.IGNORECASE)
_SIZE_SCALE = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_FAMILY_KEYS = {
    "name",
    "category",
    "description",
    "recommended",
    "tags",
    "capabilities",
    "homepage",
}
_TAG_KEYS = {"tag", "params", "quant", "size"}


@dataclass(frozen=True)
class CatalogTag:
    name: str
    parameter_count: float
    parameter_size: str
    quantization: str
    size_bytes: int


@dataclass(frozen=True)
class CatalogFamily:
    name: str
    description: str
    category: str
    recommended: str
    tags: tuple[CatalogTag, ...]
    capabilities: tuple[str, ...] = ()
    homepage: str = ""

    def model_name(self, tag: CatalogTag) -> str:
        return f"{self.name}:{tag.name}"


def default_catalog_path() -> Path:
    return Path(str(resources.files("ollama_deck").joinpath("data", "catalog.toml")))


def load_catalog(path: str | Path | None = None) -> tuple[CatalogFamily, ...]:
    """All families from the TOML file (the packaged one by default, read once)."""
    if path is None:
        return _load_default()
    return _load(Path(path))


@lru_cache(maxsize=1)
def _load_default() -> tuple[CatalogFamily, ...]:
    return _load(default_catalog_path())


def _load(path: Path) -> tuple[CatalogFamily, ...]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    entries = data.get("family")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: no [[family]] entries")
    families: list[CatalogFamily] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        family = parse_family(entry, position=position)
        if family.name.lower() in seen:
            raise ValueError(f"catalog family {family.name!r}: listed twice")
        seen.add(family.name.lower())
        families.append(family)
    return tuple(families)


def parse_family(entry: Any, *, position: int = 0) -> CatalogFamily:
    """One ``[[family]]`` table -> CatalogFamily; ValueError naming the family and the fault."""
    if not isinstance(entry, dict):
        raise ValueError(f"catalog entry #{position}: not a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"catalog entry #{position}: missing name")
    name = name.strip()

    def fail(problem: str) -> ValueError:
        return ValueError(f"catalog family {name!r}: {problem}")

    unknown = set(entry) - _FAMILY_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}")
    category = entry.get("category")
    if category not in CATEGORIES:
        raise fail(f"category {category!r} is not one of {', '.join(CATEGORIES)}")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise fail("missing description")
    raw_tags = entry.get("tags")
    if not isinstance(raw_tags, list) or not raw_tags:
        raise fail("no tags")
    tags = tuple(_parse_tag(name, raw, fail) for raw in raw_tags)
    tag_names = [tag.name for tag in tags]
    if len(set(tag_names)) != len(tag_names):
        raise fail("a tag is listed twice")
    recommended = entry.get("recommended")
    if recommended not in tag_names:
        raise fail(f"recommended tag {recommended!r} is not among its tags {tag_names}")
    capabilities = entry.get("capabilities", [])
    if not isinstance(capabilities, list) or not all(
        isinstance(item, str) and item for item in capabilities
    ):
        raise fail("capabilities must be a list of strings")
    homepage = entry.get("homepage", LIBRARY_URL + name)
    if not isinstance(homepage, str):
        raise fail("homepage must be a string")
    return CatalogFamily(
        name=name,
        description=description.strip(),
        category=category,
        recommended=recommended,
        tags=tags,
        capabilities=tuple(capabilities),
        homepage=homepage,
    )


def _parse_tag(family: str, raw: Any, fail: Callable[[str], ValueError]) -> CatalogTag:
    if not isinstance(raw, dict):
        raise fail("each tag must be an inline table")
    unknown = set(raw) - _TAG_KEYS
    if unknown:
        raise fail(f"tag with unknown keys {sorted(unknown)}")
    tag = raw.get("tag")
    if not isinstance(tag, str) or not tag:
        raise fail("a tag has no name")
    try:
        parse_model_name(f"{family}:{tag}")
    except InvalidModelName as exc:
        raise fail(f"{family}:{tag} is not a valid model name ({exc})") from exc
    params = raw.get("params")
    count = parse_parameter_size(params)
    if count is None:
        raise fail(f"tag {tag}: params {params!r} is not like '3.2B' or '335M'")
    quant = raw.get("quant")
    if quant not in BITS_PER_WEIGHT:
        raise fail(f"tag {tag}: unknown quantization {quant!r}")
    size = raw.get("size")
    size_bytes = parse_size(size)
    if size_bytes is None:
        raise fail(f"tag {tag}: size {size!r} is not like '2.0GB' or '274MB'")
    return CatalogTag(
        name=tag,
        parameter_count=count,
        parameter_size=str(params).strip().upper(),
        quantization=quant,
        size_bytes=size_bytes,
    )


def parse_size(text: Any) -> int | None:
    """``"2.0GB"`` -> 2_000_000_000, ``"274MB"`` -> 274_000_000 (decimal units); else None."""
    if not isinstance(text, str):
        return None
    match = _SIZE_RE.match(text)
    if not match:
        return None
    value = round(float(match.group(1)) * _SIZE_SCALE[match.group(2).upper()])
    return value if value > 0 else None


def search_catalog(
    families: Iterable[CatalogFamily], *, category: str | None = None, query: str | None = None
) -> list[CatalogFamily]:
    """Families in ``category`` (all when None/empty) matching every word of ``query``.

    A word matches when it occurs, case-insensitively, in the family name, description or
    one of its tag names, so "qwen 7b" finds qwen2.5 with its 7b tag.
    """
    words = (query or "").lower().split()
    wanted = (category or "").strip().lower()
    found: list[CatalogFamily] = []
    for family in families:
        if wanted and family.category != wanted:
            continue
        haystack = [family.name.lower(), family.description.lower()]
        haystack += [tag.name.lower() for tag in family.tags]
        if all(any(word in text for text in haystack) for word in words):
            found.append(family)
    return found


def catalog_entry_json(
    family: CatalogFamily,
    *,
    installed: set[str],
    vram_for: Callable[[CatalogTag], dict[str, Any]],
    gpu_total_bytes: int | None,
) -> dict[str, Any]:
    """JSON-ready family; ``installed`` holds lowercased ``name:tag`` strings."""
    tags = []
    for tag in family.tags:
        model = family.model_name(tag)
        vram = vram_for(tag)
        fits = None
        if gpu_total_bytes is not None:
            fits = vram["total_bytes"] <= gpu_total_bytes
        tags.append(
            {
                "name": tag.name,
                "model": model,
                "parameter_size": tag.parameter_size,
                "quantization": tag.quantization,
                "size_bytes": tag.size_bytes,
                "installed": model.lower() in installed,
                "vram": vram,
                "fits": fits,
                "recommended": tag.name == family.recommended,
            }
        )
    return {
        "name": family.name,
        "description": family.description,
        "category": family.category,
        "recommended": family.recommended,
        "capabilities": list(family.capabilities),
        "homepage": family.homepage,
        "installed": any(tag["installed"] for tag in tags),
        "tags": tags,
    }
