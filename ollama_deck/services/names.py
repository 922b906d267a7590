"""Ollama model names: parse, validate and normalise them the way Ollama does.

A name is ``[scheme://][host/][namespace/]model[:tag]`` with the defaults
``registry.ollama.ai``, ``library`` and ``latest`` (Ollama's types/model/name.go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(:[0-9]+)?")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")
_PART_RE = re.compile(_PART)
_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}


class InvalidModelName(ValueError):
    """The text is not a model name Ollama would accept."""


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def display(self) -> str:
        """Shortest form Ollama shows: ``model:tag``, ``ns/model:tag`` or the full name."""
        if self.host != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def key(self) -> str:
        """Comparison key: Ollama matches local model names case-insensitively."""
        return self.display.lower()

    def __str__(self) -> str:
        return self.display


def parse_model_name(text: str) -> ModelName:
    """Parse ``text`` into its parts, filling Ollama's defaults; raise InvalidModelName."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidModelName("model name is required")
    raw = text.strip()
    rest = raw.split("://", 1)[1] if "://" in raw else raw

    tag = DEFAULT_TAG
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]

    parts = rest.split("/")
    if len(parts) > 3:
        raise InvalidModelName(f"invalid model name {raw!r}: too many '/' parts")
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        namespace, model = parts
    else:
        (model,) = parts

    _check("host", host, _HOST_RE, raw)
    _check("namespace", namespace, _NAMESPACE_RE, raw)
    _check("model", model, _PART_RE, raw)
    _check("tag", tag, _PART_RE, raw)
    return ModelName(host=host, namespace=namespace, model=model, tag=tag)


def normalize_model_name(text: str) -> str:
    """The display form of a valid name, e.g. ``llama3.2`` -> ``llama3.2:latest``."""
    return parse_model_name(text).display


def _check(kind: str, value: str, pattern: re.Pattern[str], raw: str) -> None:
    if not value:
        raise InvalidModelName(f"invalid model name {raw!r}: empty {kind}")
    if len(value) > _LIMITS[kind]:
        raise InvalidModelName(
            f"invalid model name {raw!r}: {kind} is longer than {_LIMITS[kind]} characters"
        )
    if not pattern.fullmatch(value):
        raise InvalidModelName(f"invalid model name {raw!r}: bad characters in {kind} {value!r}")
