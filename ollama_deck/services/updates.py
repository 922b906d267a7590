"""Updates: pull installed models again and tell whether their digest changed.

Ollama has no update command; pulling an installed model fetches only changed layers, so
an update is an operation of kind ``update`` that pulls and compares the manifest digest
before and after. The outcome is kept in the operation's ``message`` in a fixed form
(``updated from <old> to <new>`` or ``already current at <digest>``), which
:func:`update_result` reads back into the ``result`` of the operation's JSON: no new
column is needed.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import DeckError
from ..errors import NotFound
from ..lifecycle import Kind
from ..lifecycle import Status
from .names import check_registry
from .names import InvalidModelName
from .names import parse_model_name
from .names import RegistryNotAllowed
from .ollama import OllamaClient

UNKNOWN = "unknown"
_UPDATED = re.compile(r"^updated from (\w+) to (\w+)$")
_CURRENT = re.compile(r"^already current at (\w+)$")


def update_message(before: str | None, after: str | None) -> str:
    """The final message of an update: whether the digest moved, with both digests."""
    if before is not None and before == after:
        return f"already current at {after}"
    return f"updated from {before or UNKNOWN} to {after or UNKNOWN}"


def update_result(row: dict[str, Any]) -> dict[str, Any] | None:
    """``{"status": "updated"|"current", "old", "new"}`` of a succeeded update, else None."""
    if row["kind"] != Kind.UPDATE or row["status"] != Status.SUCCEEDED:
        return None
    message = row["message"] or ""
    if match := _CURRENT.match(message):
        digest = match.group(1)
        return {"status": "current", "old": digest, "new": digest}
    if match := _UPDATED.match(message):
        old, new = (None if d == UNKNOWN else d for d in match.groups())
        return {"status": "updated", "old": old, "new": new}
    return None


def installed_digest(client: OllamaClient, model: str) -> str | None:
    """The manifest digest of an installed model, or None (not installed, Ollama down)."""
    try:
        key = parse_model_name(model).key
        models = client.tags()
    except (DeckError, InvalidModelName):
        return None
    for entry in models:
        try:
            if parse_model_name(entry.get("name") or entry.get("model") or "").key == key:
                return entry.get("digest")
        except InvalidModelName:
            continue
    return None


def registry_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    try:
        check_registry(parse_model_name(name), allowed)
    except RegistryNotAllowed:
        return False
    return True


def queue_updates(
    runner: Any, client: OllamaClient, names: list[str] | None, host: str | None = None
) -> list[dict[str, Any]]:
    """Queue an update of each named installed model (all of them for None) on ``host``
    (an Ollama URL of the configuration, whose client is ``client``; default: the first).

    Returns one entry per model: the operation row and whether it was created. A model
    already being pulled or loaded joins that operation, as its end brings the newest
    version too. 404 when a named model is not installed, so a typo never pulls a model
    anew; 400 when one names a registry the deck does not pull from. Every named model is
    checked before anything is queued. Without names, models from such registries are
    left out (updating them would fetch from there). 429, with nothing queued, when the
    new operations do not all fit in the queue.
    """
    allowed = runner.settings.allowed_registries
    installed = {}
    for entry in client.tags():
        name = entry.get("name") or entry.get("model") or ""
        try:
            installed[parse_model_name(name).key] = name
        except InvalidModelName:
            continue  # a name Ollama has but the deck cannot pull by: nothing to update
    if names is None:
        wanted = [name for name in installed.values() if registry_allowed(name, allowed)]
    else:
        parsed = [parse_model_name(name) for name in names]
        for name in parsed:
            check_registry(name, allowed)
        wanted = []
        for name in parsed:
            if name.key not in installed:
                raise NotFound(f"{name} is not installed; pull it first", code="model_not_found")
            wanted.append(installed[name.key])
    results = runner.submit_all(Kind.UPDATE, list(dict.fromkeys(wanted)), host)
    return [{"row": row, "created": created} for row, created in results]
