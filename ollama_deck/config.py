"""Settings: one typed, frozen :class:`DeckSettings` per app, checked when the deck starts.

Flask config keys all start with ``OLLAMA_DECK_`` so they never clash with a host app's;
each can also come from the environment (the same name, except ``OLLAMA_HOST`` and
``OLLAMA_HOSTS``, the variables Ollama's own tools use). A bad value stops the start with a
message naming the variable and what it takes, instead of meaning a default in silence.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from datetime import tzinfo
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfoNotFoundError

from .windows import ALL_HOSTS
from .windows import local_zone
from .windows import parse_windows
from .windows import Window

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


class SettingError(ValueError):
    """A setting with a value the deck cannot use; the message names the variable."""


Parse = Callable[[Any], Any]
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError("use 1/0, true/false, yes/no or on/off")


def _number(kind: type, minimum: float, *, above: bool) -> Parse:
    """A parser of ``kind`` (int or float) that refuses bools, junk, infinities and values
    below ``minimum`` (or not above it, with ``above``), saying what it takes."""
    word = "a whole number" if kind is int else "a number"
    bound = f"greater than {minimum:g}" if above else f"{minimum:g} or more"

    def parse(value: Any) -> Any:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError(f"use {word} {bound}")
        try:
            number = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"use {word} {bound}") from None
        if not math.isfinite(number) or number < minimum or (above and number == minimum):
            raise ValueError(f"use {word} {bound}")
        return number

    return parse


def _choice(*names: str) -> Parse:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in names:
            raise ValueError(f"use {', '.join(names[:-1])} or {names[-1]}")
        return text

    return parse


def _text(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _names(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(n).strip().lower() for n in items if str(n).strip())


def _hosts(value: Any) -> dict[str, str] | None:
    if isinstance(value, Mapping):
        return {str(name).lower(): normalize_ollama_host(url) for name, url in value.items()}
    return parse_ollama_hosts(str(value)) or None


def _memory(value: Any) -> int | None:
    # Imported here: services/ is the logic layer, config must load without it.
    from .services.gpu import parse_memory

    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    if not text:
        return None
    size = parse_memory(text)
    if size is None:
        raise ValueError("use a memory size such as 24GB, 24576MiB or a byte count")
    return size


def _registries(value: Any) -> tuple[str, ...]:
    # Imported here: services/ is the logic layer, config must load without it.
    from .services.names import normalize_registry

    items = value.split(",") if isinstance(value, str) else value
    return tuple(normalize_registry(str(item)) for item in items if str(item).strip())


def _zone_name(value: Any) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    try:
        local_zone(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("use an IANA time zone name such as Europe/Berlin or UTC") from None
    return text


def _windows(value: Any) -> dict[str, Window] | None:
    if isinstance(value, Mapping):
        value = ",".join(f"{name}={span}" for name, span in value.items())
    try:
        return parse_windows(str(value)) or None
    except ValueError as exc:
        raise ValueError(
            f"{exc}; use host=HH:MM-HH:MM pairs such as gpu1=01:00-06:00 (a window without "
            "a host applies to every host)"
        ) from None


RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?(?:/s)?", re.IGNORECASE)
RATE_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def _bytes_per_second(value: Any) -> int:
    """A rate in bytes per second: ``512000``, ``512KB`` (decimal, as the page shows
    sizes), ``500KiB``, ``1MB/s``; 0 is off."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = RATE.fullmatch(str(value).strip())
    if match is None:
        raise ValueError("use bytes per second: a whole number, or a size such as 512KB; 0: off")
    unit = (match.group(2) or "").lower().removesuffix("b")
    return int(float(match.group(1)) * RATE_UNITS[unit])


class Role(StrEnum):
    """What a token may do: ``read`` every GET, the event streams and /metrics; ``write``
    everything."""

    READ = "read"
    WRITE = "write"


TOKEN_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
DEFAULT_TOKEN_NAME = "default"  # what OLLAMA_DECK_TOKEN is called


@dataclass(frozen=True)
class AccessToken:
    """A named token with a role. The secret never appears in a repr (settings get logged)."""

    name: str
    role: Role
    secret: str = field(repr=False)

    @property
    def writes(self) -> bool:
        return self.role == Role.WRITE


def parse_tokens(value: Any) -> tuple[AccessToken, ...]:
    """``OLLAMA_DECK_TOKENS``: ``name:role:token`` entries, comma or space separated.

    The token is everything after the second colon (it may hold colons itself); names are
    unique, and so are tokens (one token must mean one name and one role).
    """
    if isinstance(value, AccessToken):
        value = [value]
    items = re.split(r"[,\s]+", value.strip()) if isinstance(value, str) else list(value)
    tokens: list[AccessToken] = []
    for item in items:
        if isinstance(item, AccessToken):
            tokens.append(item)
            continue
        if not str(item).strip():
            continue
        name, _, rest = str(item).strip().partition(":")
        role, _, secret = rest.partition(":")
        name = name.lower()
        if not TOKEN_NAME.fullmatch(name) or role.lower() not in set(Role) or not secret:
            raise ValueError(
                "use name:role:token entries, comma-separated (role read or write; names "
                "a-z, 0-9, '.', '_', '-')"
            )
        tokens.append(AccessToken(name, Role(role.lower()), secret))
    _check_unique(tokens)
    return tuple(tokens)


def _check_unique(tokens: list[AccessToken]) -> None:
    names = [t.name for t in tokens]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"the name {name!r} is given twice")
    if len({t.secret for t in tokens}) < len(tokens):
        raise ValueError("two entries have the same token")


def _urls(value: Any) -> tuple[str, ...]:
    items = re.split(r"[,\s]+", value.strip()) if isinstance(value, str) else list(value)
    urls = [str(item).strip() for item in items if str(item).strip()]
    for number, url in enumerate(urls, 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not the URL itself: a hook's URL often holds its secret (Slack's, ntfy's).
            raise ValueError(f"URL {number} is not an http(s) URL (separate URLs with commas)")
    return tuple(urls)


def setting(default: Any, env: str, parse: Parse, *, secret: bool = False) -> Any:
    """A field of :class:`DeckSettings`: its default, its environment variable, its parser
    (which takes text from the environment or a value from the app's config). A ``secret``
    value is never repeated in an error message (nor shown in the settings' repr)."""
    return field(
        default=default, repr=not secret, metadata={"env": env, "parse": parse, "secret": secret}
    )


_positive = _number(float, 0, above=True)
_seconds_or_zero = _number(float, 0, above=False)
_count = _number(int, 1, above=False)
_count_or_zero = _number(int, 0, above=False)


@dataclass(frozen=True)
class DeckSettings:
    """Every setting of one deck, typed and checked once, when the deck is registered.

    Each field's config key is ``OLLAMA_DECK_`` + its name in capitals; the environment
    variable is the same unless noted. The app's config wins over the environment, the
    environment over the default. Built by :meth:`from_config`; never changed afterwards.
    """

    # env OLLAMA_HOST, the variable Ollama's own tools use.
    ollama_host: str = setting(DEFAULT_OLLAMA_HOST, "OLLAMA_HOST", normalize_ollama_host)
    # env OLLAMA_HOSTS. Several Ollama hosts: "gpu1=http://10.0.0.5:11434,gpu2=...". The
    # first is the default; without it, OLLAMA_HOST is the one host, named "default".
    ollama_hosts: Mapping[str, str] | None = setting(None, "OLLAMA_HOSTS", _hosts)
    # None: standalone, ollama_deck.db in the user's data directory (datadir.py); embedded
    # without db=, a SQLite file in the host app's instance folder (state.database_url).
    database_url: str | None = setting(None, "OLLAMA_DECK_DATABASE_URL", _text)
    # Seconds to wait for Ollama to accept a connection / start a chat reply (it loads the
    # model first) and between the reply's words.
    connect_timeout: float = setting(5.0, "OLLAMA_DECK_CONNECT_TIMEOUT", _positive)
    request_timeout: float = setting(30.0, "OLLAMA_DECK_REQUEST_TIMEOUT", _positive)
    # Seconds for what Ollama answers at once (list, status, ps, show, delete, unload, the
    # check before a chat): past it the deck answers from its cache or with a 504, so no
    # request waits long for a hung Ollama.
    quick_timeout: float = setting(3.0, "OLLAMA_DECK_QUICK_TIMEOUT", _positive)
    # A stream from Ollama that sends nothing at all for this long (Ollama sends a pull line
    # about every 60 ms): while a pull downloads it is a stall, reopened as below; while
    # Ollama verifies, writes or loads a model, it fails as timed out.
    pull_stall_timeout: float = setting(120.0, "OLLAMA_DECK_PULL_STALL_TIMEOUT", _positive)
    # After this many seconds without new bytes a pull shows "stalled" (speed 0, no ETA).
    stall_notice_seconds: float = setting(5.0, "OLLAMA_DECK_STALL_NOTICE_SECONDS", _positive)
    # A pull without new bytes this long (Ollama still ticking), or slower than
    # pull_crawl_bytes per second over this long, has its stream closed and opened again:
    # Ollama resumes from its partial files. That many times in a row, then it fails.
    pull_stall_retry_seconds: float = setting(
        60.0, "OLLAMA_DECK_PULL_STALL_RETRY_SECONDS", _positive
    )
    pull_crawl_bytes: int = setting(0, "OLLAMA_DECK_PULL_CRAWL_BYTES", _bytes_per_second)
    pull_retries: int = setting(3, "OLLAMA_DECK_PULL_RETRIES", _count_or_zero)
    # Per host, the daily local times in which pulls may run: "gpu1=01:00-06:00".
    pull_windows: Mapping[str, Window] | None = setting(None, "OLLAMA_DECK_PULL_WINDOWS", _windows)
    # The zone of download windows and of not_before times without one; None: the machine's.
    timezone: str | None = setting(None, "OLLAMA_DECK_TIMEZONE", _zone_name)
    # How long a pull waits (with backoff) for an Ollama that is not reachable; 0: no wait.
    ollama_wait_seconds: float = setting(300.0, "OLLAMA_DECK_OLLAMA_WAIT_SECONDS", _seconds_or_zero)
    # With no GPU known, the page asks before pulling a model whose VRAM estimate is over
    # this many GB (with a GPU known, it asks when the model does not fit it).
    pull_warn_gb: float = setting(16.0, "OLLAMA_DECK_PULL_WARN_GB", _seconds_or_zero)
    # GPU memory in bytes for the fit badges ("24GB", "24576MiB" or a byte count), instead
    # of nvidia-smi's answer: for a deck that runs on another machine than the GPU.
    gpu_memory: int | None = setting(None, "OLLAMA_DECK_GPU_MEMORY", _memory)
    # Pulls that run at once in this service; the rest wait as `queued`.
    max_concurrent_pulls: int = setting(2, "OLLAMA_DECK_MAX_CONCURRENT_PULLS", _count)
    # Operations that may wait as `queued`; more answer 429.
    max_queued: int = setting(100, "OLLAMA_DECK_MAX_QUEUED", _count)
    log_lines: int = setting(300, "OLLAMA_DECK_LOG_LINES", _count)
    # Finished operations older than this many hours are forgotten ...
    keep_finished_hours: float = setting(24 * 7.0, "OLLAMA_DECK_KEEP_FINISHED_HOURS", _positive)
    # ... and only the newest this many finished operations are kept.
    keep_finished_count: int = setting(1000, "OLLAMA_DECK_KEEP_FINISHED_COUNT", _count_or_zero)
    # A running operation whose runner has not beaten for this long is taken over.
    heartbeat_seconds: float = setting(5.0, "OLLAMA_DECK_HEARTBEAT_SECONDS", _positive)
    stale_seconds: float = setting(30.0, "OLLAMA_DECK_STALE_SECONDS", _positive)
    # What to do with operations left by a runner that vanished.
    on_restart: str = setting("resume", "OLLAMA_DECK_ON_RESTART", _choice("resume", "interrupt"))
    # How long Ollama keeps a model in memory after a load from the page (Ollama's format).
    keep_alive: str = setting("30m", "OLLAMA_DECK_KEEP_ALIVE", str)
    # SSE comment line interval, which keeps proxies from closing idle streams.
    sse_heartbeat_seconds: float = setting(15.0, "OLLAMA_DECK_SSE_HEARTBEAT_SECONDS", _positive)
    # An SSE client resuming from further back than this many events gets the current
    # state of each operation instead of the whole history.
    replay_max_events: int = setting(1000, "OLLAMA_DECK_REPLAY_MAX_EVENTS", _count_or_zero)
    # How committed changes reach the SSE watchers of every worker: auto (redis when
    # OLLAMA_DECK_REDIS_URL is set, else poll), local (one process only), poll, redis.
    event_bus: str = setting(
        "auto", "OLLAMA_DECK_EVENT_BUS", _choice("auto", "local", "poll", "redis")
    )
    redis_url: str | None = setting(None, "OLLAMA_DECK_REDIS_URL", _text)
    # With the poll bus: how often each process reads what other processes committed.
    poll_seconds: float = setting(0.5, "OLLAMA_DECK_POLL_SECONDS", _positive)
    # Run pulls in this process (started by the first request the deck serves, or in each
    # worker of `ollama-deck serve`). Off: operations are only recorded as queued, for a
    # runner in another process.
    start_runner: bool = setting(True, "OLLAMA_DECK_START_RUNNER", _bool)
    # Apply the deck's schema migrations on first use (under a database lock). Off: run
    # `ollama-deck db upgrade` yourself; an outdated schema then answers 503.
    auto_upgrade: bool = setting(True, "OLLAMA_DECK_AUTO_UPGRADE", _bool)
    # Under gevent, SQLite lock waits run in gevent's thread pool, off the event loop.
    # Off only for bench/locked_db.py's comparison.
    sqlite_offload: bool = setting(True, "OLLAMA_DECK_SQLITE_OFFLOAD", _bool)
    # Security (see security.py). Host names the deck answers to besides loopback and the
    # address a connection came in on: comma-separated, ".example.com" takes subdomains,
    # "*" turns the check off (only behind a proxy that checks Host itself).
    allowed_hosts: tuple[str, ...] = setting((), "OLLAMA_DECK_ALLOWED_HOSTS", _names)
    # When set, every endpoint but the page shell, its static files and the health check
    # needs "Authorization: Bearer <token>" (or the session cookie the page trades it for).
    # It is a write token named "default" (see access_tokens).
    token: str | None = setting(None, "OLLAMA_DECK_TOKEN", _text, secret=True)
    # Named tokens with a role: "name:role:token,...", role read or write.
    tokens: tuple[AccessToken, ...] = setting((), "OLLAMA_DECK_TOKENS", parse_tokens, secret=True)
    # A session (the page's cookie) ends this many seconds after it was opened, whatever
    # happens, and earlier after this many seconds without a request (an open event stream
    # counts as use).
    session_max_age: float = setting(12 * 3600.0, "OLLAMA_DECK_SESSION_MAX_AGE", _positive)
    session_idle_timeout: float = setting(3600.0, "OLLAMA_DECK_SESSION_IDLE_TIMEOUT", _positive)
    # Registries Ollama may pull from besides its own and Hugging Face's: host or
    # host:port, comma-separated. Names that name any other host answer 400.
    allowed_registries: tuple[str, ...] = setting((), "OLLAMA_DECK_ALLOWED_REGISTRIES", _registries)
    # /healthz trusts the outcome of the deck's own writes; when none is newer than this
    # many seconds, it writes one small row itself (at most once per this many seconds in
    # each process), so a full disk or a read-only database shows as failing.
    health_write_seconds: float = setting(60.0, "OLLAMA_DECK_HEALTH_WRITE_SECONDS", _positive)
    # Webhooks (see services/webhooks.py): URLs that receive a signed JSON POST when an
    # operation ends (and starts, with webhook_on_start); only from configuration.
    webhook_urls: tuple[str, ...] = setting((), "OLLAMA_DECK_WEBHOOK_URLS", _urls, secret=True)
    # Key of the X-Ollama-Deck-Signature HMAC-SHA256 of each body; unset: not signed.
    webhook_secret: str | None = setting(None, "OLLAMA_DECK_WEBHOOK_SECRET", _text, secret=True)
    webhook_on_start: bool = setting(False, "OLLAMA_DECK_WEBHOOK_ON_START", _bool)
    # A failed delivery is tried again after this many seconds, doubling up to 10 minutes,
    # for webhook_retry_hours; then it is given up.
    webhook_retry_seconds: float = setting(5.0, "OLLAMA_DECK_WEBHOOK_RETRY_SECONDS", _positive)
    webhook_retry_hours: float = setting(24.0, "OLLAMA_DECK_WEBHOOK_RETRY_HOURS", _positive)
    # Seconds to connect to a receiver and to get its answer, each.
    webhook_timeout: float = setting(10.0, "OLLAMA_DECK_WEBHOOK_TIMEOUT", _positive)
    # Apply the stored desired model set (PUT /api/desired-models) every this many seconds,
    # by one process at a time across workers and machines (a lease in the database).
    # Unset: only on request (POST /api/apply).
    reconcile_seconds: float | None = setting(
        None, "OLLAMA_DECK_RECONCILE_SECONDS", _number(float, 1, above=False)
    )
    # Bodies larger than this answer 413 before anything is read.
    max_body_bytes: int = setting(64 * 1024, "OLLAMA_DECK_MAX_BODY_BYTES", _count)
    # A client that has not sent its whole body after this many seconds is cut off (408).
    body_timeout: float = setting(10.0, "OLLAMA_DECK_BODY_TIMEOUT", _positive)

    def __post_init__(self) -> None:
        # A rule across two settings, so it is checked here rather than by one parser.
        if self.event_bus == "redis" and not self.redis_url:
            raise SettingError("OLLAMA_DECK_EVENT_BUS=redis needs OLLAMA_DECK_REDIS_URL")
        if self.stall_notice_seconds >= self.pull_stall_retry_seconds:
            raise SettingError(
                f"OLLAMA_DECK_STALL_NOTICE_SECONDS ({self.stall_notice_seconds:g}) must be "
                f"less than OLLAMA_DECK_PULL_STALL_RETRY_SECONDS "
                f"({self.pull_stall_retry_seconds:g}): a stall shows before its stream is "
                "reopened"
            )
        unknown = sorted(set(self.pull_windows or {}) - set(self.hosts) - {ALL_HOSTS})
        if unknown:
            raise SettingError(
                f"OLLAMA_DECK_PULL_WINDOWS names {', '.join(map(repr, unknown))}, not a "
                f"configured host ({', '.join(self.hosts)})"
            )
        names = {t.name for t in self.tokens}
        if self.token and DEFAULT_TOKEN_NAME in names:
            raise SettingError(
                f"OLLAMA_DECK_TOKENS names a token {DEFAULT_TOKEN_NAME!r}, the name of "
                "OLLAMA_DECK_TOKEN: rename it, or list that token there alone"
            )
        if self.token and any(t.secret == self.token for t in self.tokens):
            raise SettingError("OLLAMA_DECK_TOKENS repeats OLLAMA_DECK_TOKEN under another name")

    @property
    def zone(self) -> tzinfo:
        """The deck's time zone: ``timezone``, else the machine's local zone."""
        return local_zone(self.timezone)

    @property
    def access_tokens(self) -> tuple[AccessToken, ...]:
        """Every token the deck takes: OLLAMA_DECK_TOKEN (a write token named "default")
        and OLLAMA_DECK_TOKENS. Empty: the deck asks for none."""
        single = (AccessToken(DEFAULT_TOKEN_NAME, Role.WRITE, self.token),) if self.token else ()
        return single + tuple(self.tokens)

    @property
    def bus(self) -> str:
        """The event bus in use: ``auto`` is redis when a Redis URL is set, else poll."""
        if self.event_bus == "auto":
            return "redis" if self.redis_url else "poll"
        return self.event_bus

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> DeckSettings:
        """Each setting from ``config`` (key ``OLLAMA_DECK_<NAME>``), else from ``environ``
        (default ``os.environ``), else its default. SettingError names the first bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            key, var, parse = config_key(item.name), item.metadata["env"], item.metadata["parse"]
            raw, source = config.get(key), key
            if raw is None:
                raw, source = env.get(var), var
            if raw is None or (isinstance(raw, str) and raw.strip() == ""):
                continue  # the default (already the typed value)
            try:
                values[item.name] = parse(raw)
            except ValueError as exc:
                shown = "" if item.metadata.get("secret") else f"={raw!r}"
                raise SettingError(f"{source}{shown} is not valid: {exc}") from None
        return cls(**values)

    def as_config(self) -> dict[str, Any]:
        """The settings as ``OLLAMA_DECK_*`` config keys with their typed values."""
        return {config_key(item.name): getattr(self, item.name) for item in fields(self)}

    @property
    def hosts(self) -> dict[str, str]:
        """The Ollama hosts in order: ``OLLAMA_HOSTS``, else ``OLLAMA_HOST`` as "default".
        The first is the default for requests that name none."""
        if self.ollama_hosts:
            return dict(self.ollama_hosts)
        return {"default": self.ollama_host}


def config_key(name: str) -> str:
    """The app config key of a :class:`DeckSettings` field."""
    return f"OLLAMA_DECK_{name.upper()}"


# key -> (environment variable, default): what the environment documents, for readers.
SETTINGS: dict[str, tuple[str, Any]] = {
    config_key(item.name): (item.metadata["env"], item.default) for item in fields(DeckSettings)
}


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting as config keys, from ``environ`` (default ``os.environ``) or its
    default; SettingError (a ValueError) names a bad variable."""
    return DeckSettings.from_config({}, environ).as_config()
