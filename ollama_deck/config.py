"""Settings: each read from the environment, with its default beside it.

Flask config keys all start with ``OLLAMA_DECK_`` so they never clash with a host app's.
The Ollama URL is read from ``OLLAMA_HOST``, the variable Ollama's own tools use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


def normalize_ollama_host(value: str | None) -> str:
    """Turn any OLLAMA_HOST form into a base URL, following Ollama's own rules.

    ``host`` -> ``http://host:11434``; ``host:port``; ``:port`` -> 127.0.0.1;
    ``http://host`` -> port 80, ``https://host`` -> 443; ``0.0.0.0`` means "listen on
    all interfaces", so a client dials 127.0.0.1 instead.
    """
    text = (value or "").strip()
    if not text:
        return DEFAULT_OLLAMA_HOST
    scheme = "http"
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"OLLAMA_HOST: unsupported scheme {scheme!r} (use http or https)")
        default_port = 443 if scheme == "https" else 80
    else:
        default_port = 11434
    hostport, _, path = text.partition("/")
    if hostport == "::":
        hostport = "[::]"
    parts = urlsplit(f"//{hostport}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"OLLAMA_HOST: bad port in {value!r}") from exc
    host = parts.hostname or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    path = "/" + path.rstrip("/") if path.strip("/") else ""
    return f"{scheme}://{host}:{port or default_port}{path}"


HOST_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")


def parse_ollama_hosts(value: str | None) -> dict[str, str]:
    """``OLLAMA_HOSTS``: ``name=url`` pairs, comma or space separated, in order -> {name: url}.

    Each URL takes any form ``OLLAMA_HOST`` takes. Empty: no list (``OLLAMA_HOST`` alone).
    """
    hosts: dict[str, str] = {}
    for item in re.split(r"[,\s]+", (value or "").strip()):
        if not item:
            continue
        name, sep, url = item.partition("=")
        name = name.strip().lower()
        if not sep or not HOST_NAME.fullmatch(name):
            raise ValueError(
                f"OLLAMA_HOSTS: {item!r} is not name=url (names: a-z, 0-9, '.', '_', '-')"
            )
        if name in hosts:
            raise ValueError(f"OLLAMA_HOSTS: the name {name!r} is given twice")
        hosts[name] = normalize_ollama_host(url)
    return hosts


def ollama_hosts(config: Mapping[str, Any]) -> dict[str, str]:
    """The Ollama hosts of a deck, in order: ``OLLAMA_HOSTS``, else ``OLLAMA_HOST`` alone
    under the name ``default``. The first is the default for requests that name none."""
    hosts = config.get("OLLAMA_DECK_OLLAMA_HOSTS") or {}
    if isinstance(hosts, str):
        hosts = parse_ollama_hosts(hosts)
    if hosts:
        return dict(hosts)
    return {"default": normalize_ollama_host(config.get("OLLAMA_DECK_OLLAMA_HOST"))}


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip().lower() for n in text.split(",") if n.strip())


# key -> (environment variable, default, parser). None as default: computed by the app
# (the SQLite file lives in the app's instance folder).
SETTINGS: dict[str, tuple[str, Any, Callable[[str], Any]]] = {
    "OLLAMA_DECK_OLLAMA_HOST": ("OLLAMA_HOST", DEFAULT_OLLAMA_HOST, normalize_ollama_host),
    # Several Ollama hosts: "gpu1=http://10.0.0.5:11434,gpu2=http://10.0.0.6:11434". The
    # first is the default; without it, OLLAMA_HOST is the one host, named "default".
    "OLLAMA_DECK_OLLAMA_HOSTS": ("OLLAMA_HOSTS", None, parse_ollama_hosts),
    "OLLAMA_DECK_DATABASE_URL": ("OLLAMA_DECK_DATABASE_URL", None, str),
    # Seconds to wait for Ollama to accept a connection / answer a short request.
    "OLLAMA_DECK_CONNECT_TIMEOUT": ("OLLAMA_DECK_CONNECT_TIMEOUT", 5.0, float),
    "OLLAMA_DECK_REQUEST_TIMEOUT": ("OLLAMA_DECK_REQUEST_TIMEOUT", 30.0, float),
    # Seconds for the calls a page makes often (list, status, ps, show): past it the deck
    # answers from its cache, so no page request waits for a hung Ollama.
    "OLLAMA_DECK_QUICK_TIMEOUT": ("OLLAMA_DECK_QUICK_TIMEOUT", 3.0, float),
    # Ollama sends a pull line about every 60 ms, so this much silence means a stall.
    "OLLAMA_DECK_PULL_STALL_TIMEOUT": ("OLLAMA_DECK_PULL_STALL_TIMEOUT", 120.0, float),
    # After this many seconds without bytes a pull shows "stalled" (speed 0, no ETA).
    "OLLAMA_DECK_STALL_NOTICE_SECONDS": ("OLLAMA_DECK_STALL_NOTICE_SECONDS", 5.0, float),
    # How long a pull waits (with backoff) for an Ollama that is not reachable.
    "OLLAMA_DECK_OLLAMA_WAIT_SECONDS": ("OLLAMA_DECK_OLLAMA_WAIT_SECONDS", 300.0, float),
    # With no GPU known, the page asks before pulling a model whose VRAM estimate is over
    # this many GB (with a GPU known, it asks when the model does not fit it).
    "OLLAMA_DECK_PULL_WARN_GB": ("OLLAMA_DECK_PULL_WARN_GB", 16.0, float),
    # Pulls that run at once in this service; the rest wait as `queued`.
    "OLLAMA_DECK_MAX_CONCURRENT_PULLS": ("OLLAMA_DECK_MAX_CONCURRENT_PULLS", 2, int),
    # Operations that may wait as `queued`; more answer 429.
    "OLLAMA_DECK_MAX_QUEUED": ("OLLAMA_DECK_MAX_QUEUED", 100, int),
    "OLLAMA_DECK_LOG_LINES": ("OLLAMA_DECK_LOG_LINES", 300, int),
    # Finished operations older than this many hours are forgotten.
    "OLLAMA_DECK_KEEP_FINISHED_HOURS": ("OLLAMA_DECK_KEEP_FINISHED_HOURS", 24 * 7, float),
    # ... and only the newest this many finished operations are kept.
    "OLLAMA_DECK_KEEP_FINISHED_COUNT": ("OLLAMA_DECK_KEEP_FINISHED_COUNT", 1000, int),
    # A running operation whose runner has not beaten for this long is taken over.
    "OLLAMA_DECK_HEARTBEAT_SECONDS": ("OLLAMA_DECK_HEARTBEAT_SECONDS", 5.0, float),
    "OLLAMA_DECK_STALE_SECONDS": ("OLLAMA_DECK_STALE_SECONDS", 30.0, float),
    # What to do with operations left by a runner that vanished: resume or interrupt.
    "OLLAMA_DECK_ON_RESTART": ("OLLAMA_DECK_ON_RESTART", "resume", str),
    # How long Ollama keeps a model in memory after a load from the page (Ollama's format).
    "OLLAMA_DECK_KEEP_ALIVE": ("OLLAMA_DECK_KEEP_ALIVE", "30m", str),
    # SSE comment line interval, which keeps proxies from closing idle streams.
    "OLLAMA_DECK_SSE_HEARTBEAT_SECONDS": ("OLLAMA_DECK_SSE_HEARTBEAT_SECONDS", 15.0, float),
    # An SSE client resuming from further back than this many events gets the current
    # state of each operation instead of the whole history.
    "OLLAMA_DECK_REPLAY_MAX_EVENTS": ("OLLAMA_DECK_REPLAY_MAX_EVENTS", 1000, int),
    # How committed changes reach the SSE watchers of every worker: auto (redis when
    # OLLAMA_DECK_REDIS_URL is set, else poll), local (one process only), poll, redis.
    "OLLAMA_DECK_EVENT_BUS": ("OLLAMA_DECK_EVENT_BUS", "auto", str),
    "OLLAMA_DECK_REDIS_URL": ("OLLAMA_DECK_REDIS_URL", None, str),
    # With the poll bus: how often each process reads what other processes committed.
    "OLLAMA_DECK_POLL_SECONDS": ("OLLAMA_DECK_POLL_SECONDS", 0.5, float),
    # Run pulls in this process (started by the first request the deck serves, or in each
    # worker of `ollama-deck serve`). Off: operations are only recorded as queued, for a
    # runner in another process.
    "OLLAMA_DECK_START_RUNNER": ("OLLAMA_DECK_START_RUNNER", True, _bool),
    # Apply the deck's schema migrations on first use (under a database lock). Off: run
    # `ollama-deck db upgrade` yourself; an outdated schema then answers 503.
    "OLLAMA_DECK_AUTO_UPGRADE": ("OLLAMA_DECK_AUTO_UPGRADE", True, _bool),
    # Security (see security.py). Host names the deck answers to besides loopback and the
    # address a connection came in on: comma-separated, ".example.com" takes subdomains,
    # "*" turns the check off (only behind a proxy that checks Host itself).
    "OLLAMA_DECK_ALLOWED_HOSTS": ("OLLAMA_DECK_ALLOWED_HOSTS", (), _names),
    # When set, every endpoint but the page shell, its static files and the health check
    # needs "Authorization: Bearer <token>" (or the session cookie the page trades it for).
    "OLLAMA_DECK_TOKEN": ("OLLAMA_DECK_TOKEN", None, str),
    # Bodies larger than this answer 413 before anything is read.
    "OLLAMA_DECK_MAX_BODY_BYTES": ("OLLAMA_DECK_MAX_BODY_BYTES", 64 * 1024, int),
    # A client that has not sent its whole body after this many seconds is cut off (408).
    "OLLAMA_DECK_BODY_TIMEOUT": ("OLLAMA_DECK_BODY_TIMEOUT", 10.0, float),
}


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting, from ``environ`` (default ``os.environ``) or its default."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for key, (var, default, parse) in SETTINGS.items():
        raw = env.get(var)
        if raw is None or raw == "":
            values[key] = parse(default) if key == "OLLAMA_DECK_OLLAMA_HOST" else default
            continue
        try:
            values[key] = parse(raw)
        except ValueError as exc:
            raise ValueError(f"{var}={raw!r} is not valid: {exc}") from exc
    return values
