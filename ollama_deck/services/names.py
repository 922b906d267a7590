"""Ollama model names: parse, validate and normalise them the way Ollama does.

A name is ``[scheme://][host/][namespace/]model[:tag]`` with the defaults
``registry.ollama.ai``, ``library`` and ``latest`` (Ollama's types/model/name.go).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import BadRequest

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
# Registries the deck lets Ollama pull from without being told: Ollama's own and Hugging
# Face's. A name may name any host, and Ollama fetches from whatever host it names, so a
# deck that passed names on as given would lend its network position to anyone who can
# pull (cloud metadata addresses, services on the deck's loopback, ...).
DEFAULT_REGISTRIES = (DEFAULT_HOST, "hf.co", "huggingface.co")
REGISTRIES_SETTING = "OLLAMA_DECK_ALLOWED_REGISTRIES"

# The grammar, written once: each part is a first character, then more of a wider set, up
# to a length. The checks below and the OpenAPI document's pattern are both built from it.
_FIRST = "[A-Za-z0-9_]"
_REST = {
    "host": r"[A-Za-z0-9_.\-]",
    "namespace": r"[A-Za-z0-9_\-]",
    "model": r"[A-Za-z0-9_.\-]",
    "tag": r"[A-Za-z0-9_.\-]",
}
_PORT = "(:[0-9]{1,5})"
_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_PATTERNS = {
    kind: re.compile(_FIRST + rest + "*" + (_PORT + "?" if kind == "host" else ""))
    for kind, rest in _REST.items()
}


class InvalidModelName(ValueError):
    """The text is not a model name Ollama would accept."""


class RegistryNotAllowed(BadRequest):
    """The name is valid, but it names a registry the deck does not pull from."""

    code = "registry_not_allowed"


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

    for kind, value in (("host", host), ("namespace", namespace), ("model", model), ("tag", tag)):
        _check(kind, value, _PATTERNS[kind], raw)
    return ModelName(host=host, namespace=namespace, model=model, tag=tag)


def normalize_model_name(text: str) -> str:
    """The display form of a valid name, e.g. ``llama3.2`` -> ``llama3.2:latest``."""
    return parse_model_name(text).display


def name_pattern(registries: Iterable[str] | None = None) -> str:
    """The grammar as one JSON Schema (ECMA-262) pattern, lengths included, for documents.

    Surrounding whitespace is allowed, as :func:`parse_model_name` ignores it; the scheme
    prefix it also takes is left out of the document. With ``registries`` (a deck's, in
    lower case), a name that names a registry host may name only one of them.
    """

    def part(kind: str) -> str:
        # The host's limit covers its port too: the document never promises more.
        room = _LIMITS[kind] - 1 - (len(":65535") if kind == "host" else 0)
        port = _PORT + "?" if kind == "host" else ""
        return f"{_FIRST}{_REST[kind]}{{0,{room}}}{port}"

    host, namespace, model, tag = (part(k) for k in ("host", "namespace", "model", "tag"))
    if registries is not None:
        host = "(" + "|".join(re.escape(r) for r in registries) + ")"
    return f"^\\s*(({host}/)?{namespace}/)?{model}(:{tag})?\\s*$"


def normalize_registry(text: str) -> str:
    """A registry as names spell it, ``host`` or ``host:port``, in lower case (Ollama
    compares hosts case-insensitively); ValueError when it is not one."""
    value = text.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.rstrip("/")
    if not value or len(value) > _LIMITS["host"] or not _PATTERNS["host"].fullmatch(value):
        raise ValueError(f"{text!r} is not a registry host (host or host:port)")
    return value


def check_registry(name: ModelName, extra: tuple[str, ...] = ()) -> None:
    """Refuse (RegistryNotAllowed) a name whose registry is neither a default one nor in
    ``extra`` (``OLLAMA_DECK_ALLOWED_REGISTRIES``, already normalised).

    Hosts are compared with their port: ``registry.example:5000`` and ``registry.example``
    are different servers.
    """
    host = name.host.lower()
    if host in DEFAULT_REGISTRIES or host in extra:
        return
    raise RegistryNotAllowed(
        f"{name.display} names the registry {name.host!r}, which this deck does not pull "
        f"from (it pulls from {', '.join(DEFAULT_REGISTRIES)} and the registries listed "
        f"in {REGISTRIES_SETTING}); add the registry there if it is yours"
    )


def _check(kind: str, value: str, pattern: re.Pattern[str], raw: str) -> None:
    if not value:
        raise InvalidModelName(f"invalid model name {raw!r}: empty {kind}")
    if len(value) > _LIMITS[kind]:
        raise InvalidModelName(
            f"invalid model name {raw!r}: {kind} is longer than {_LIMITS[kind]} characters"
        )
    if not pattern.fullmatch(value):
        raise InvalidModelName(f"invalid model name {raw!r}: bad characters in {kind} {value!r}")
