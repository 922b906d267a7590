"""The Ollama hosts of a deck: each with its client and its installed-model service.

Hosts come only from configuration (``OLLAMA_HOSTS``, or ``OLLAMA_HOST`` alone): a request
names one of them, never a URL, so no request can make the deck talk to a URL it chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from ..errors import DeckError
from .models import ModelService
from .ollama import OllamaClient


class UnknownHost(BadRequest):
    code = "unknown_host"


@dataclass
class OllamaHost:
    name: str
    url: str
    client: OllamaClient
    models: ModelService


class Hosts:
    """The configured hosts in order; the first is the default."""

    def __init__(self, hosts: list[OllamaHost]) -> None:
        if not hosts:
            raise ValueError("a deck needs at least one Ollama host")
        self._by_name = {host.name: host for host in hosts}
        self.default = hosts[0]

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> dict[str, str]:
        """URL -> name, as operations and the page show them."""
        return {host.url: host.name for host in self}

    def get(self, name: str | None) -> OllamaHost:
        """The host called ``name``; the default for None."""
        if name is None:
            return self.default
        host = self._by_name.get(name) if isinstance(name, str) else None
        if host is None:
            known = ", ".join(self._by_name)
            raise UnknownHost(f"no Ollama host is called {str(name)[:60]!r}; the hosts are {known}")
        return host


def describe_host(host: OllamaHost) -> dict[str, Any]:
    """Reachability, version, models, disk used and what is loaded, of one host."""
    listing = host.models.installed()
    info: dict[str, Any] = {
        "name": host.name,
        "url": host.url,
        "models": listing["count"],
        "disk_used": listing["total_size"],
        "stale": listing["stale"],
    }
    try:
        info.update(reachable=True, version=host.client.version(), running=host.client.ps())
    except DeckError as exc:
        info.update(reachable=False, error=exc.message, version=None, running=[])
    return info


def host_entries(config_hosts: Mapping[str, str], make_client, make_models) -> list[OllamaHost]:
    """One OllamaHost per configured (name, URL), built by the given factories."""
    entries = []
    for name, url in config_hosts.items():
        client = make_client(url)
        entries.append(OllamaHost(name, url, client, make_models(client, url)))
    return entries
