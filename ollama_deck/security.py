"""What keeps the deck safe to expose: Host allow-list, same-origin writes, bounded bodies,
access control and response headers.

Everything hangs off blueprint-level hooks (``protect(bp)``), so it covers the deck's own
routes and never a host app's. The checks are plain functions of values, testable alone.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import math
import re
import socket
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from functools import partial
from typing import Any
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from flask import Response
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ClientDisconnected
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from .config import AccessToken
from .config import Role
from .dbhealth import DATABASE_ERRORS
from .http import error_response
from .state import current_settings
from .state import deck
from .state import setup_of

T = TypeVar("T")

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The page shell, its files and the health check answer without the token: the page has to
# load before it can ask for one, and probes carry no credentials.
TOKEN_EXEMPT = frozenset({"ollama_deck.index", "ollama_deck.static", "ollama_deck.healthz"})
# Writes a read token may make: logging in and out are not changes of the deck.
SESSION_ENDPOINTS = frozenset({"ollama_deck_api.open_session", "ollama_deck_api.close_session"})
# POSTs that change nothing (a body too big for a query string): a read token may send them.
READS_BY_POST = frozenset({"ollama_deck_api.plan"})
PAGE_BLUEPRINT = "ollama_deck"
LOOPBACK_NAMES = frozenset({"localhost"})

PAGE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# JSON and event streams are never documents: should one be opened as a page, it can do
# nothing and cannot be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def protect(bp: Blueprint) -> None:
    """Guard every route of ``bp`` (a deck blueprint) and set its response headers."""
    bp.before_request(check_request)
    bp.after_request(add_headers)


# ---------------------------------------------------------------- the request hook


def check_request() -> ResponseReturnValue | None:
    """Refuse what must not reach a view; read a body (bounded in size and time) early."""
    refusal = _refusal()
    if refusal is not None and _has_body() and not _body_read():
        # The connection ends after the answer, with nothing more of the body read:
        # otherwise the server reads and discards the rest to reuse the connection, and a
        # fast client keeps a gevent worker busy with that (measured: four 50 MB bodies
        # held the only worker for 10 s).
        end_connection()
    return refusal


CLOSE_CONNECTION = "ollama_deck.close_connection"  # in the WSGI environ
# In the WSGI environ: the request passed the Host, origin, guard and token checks.
CHECKED = "ollama_deck.checked"


def end_connection() -> None:
    """Close this request's connection after the answer, reading nothing more from it.

    Shutting the socket for reading ends a wait for more of the body. Data the client
    keeps sending would still be read by a server that reuses the connection, so the
    answer also asks the server to close it (see ``add_headers``).
    """
    request.environ[CLOSE_CONNECTION] = True
    _stop_reading(request.environ)


BODY_READ = "ollama_deck.body_read"  # in the WSGI environ: _read_body took care of it


def _body_read() -> bool:
    return BODY_READ in request.environ


def _refusal() -> ResponseReturnValue | None:
    # Read from the WSGI environ: every request passes here, and werkzeug's header
    # lookups raise and catch a KeyError for each header that is absent.
    environ = request.environ
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    settings = setup_of(app).settings
    host = environ.get("HTTP_HOST")
    allowed = _host_allowed(
        host,
        partial(_local_address, environ),
        settings.allowed_hosts,
        _hashable(config.get("TRUSTED_HOSTS")),
        config.get("SERVER_NAME"),
    )
    if not allowed:
        return error_response(
            421,
            "host_not_allowed",
            f"this service does not answer to Host {host!r}; "
            "add it to OLLAMA_DECK_ALLOWED_HOSTS if it is yours",
        )
    limit = settings.max_body_bytes
    if environ.get("CONTENT_LENGTH"):
        length = request.content_length
        if length is not None and length > limit:
            return _too_large(limit)
    if environ["REQUEST_METHOD"] in MUTATING_METHODS and not same_origin(
        environ.get("HTTP_ORIGIN"),
        environ.get("HTTP_SEC_FETCH_SITE"),
        environ["wsgi.url_scheme"],
        host,
    ):
        return error_response(
            403,
            "cross_origin",
            "requests that change something must come from this service's own page "
            "(or from a client that sends no Origin, such as curl)",
        )
    guarded = _guard_refusal()
    if guarded is not None:
        return guarded
    tokens = settings.access_tokens
    verdict = None
    if tokens and request.endpoint not in TOKEN_EXEMPT:
        verdict = access(tokens)
        if not verdict.granted:
            return _unauthorized(verdict)
    environ[CHECKED] = True  # from here on, a write is in the activity record
    if verdict is not None and request.method in MUTATING_METHODS and not verdict.may_write:
        if request.endpoint not in SESSION_ENDPOINTS | READS_BY_POST:
            return _read_only(verdict)
    if _has_body():
        return _read_body(limit, settings.body_timeout)
    return None


# ---------------------------------------------------------------- a host's guard

# The deck's answers that are JSON or an event stream: a client of these reads JSON.
JSON_BLUEPRINTS = frozenset({"ollama_deck_api", "ollama_deck_progress"})
HEALTH_ENDPOINT = "ollama_deck.healthz"
# Sec-Fetch-Dest of fetch(), XMLHttpRequest and EventSource: a script reads the answer.
SCRIPT_DEST = "empty"
MACHINE_TYPES = ("application/json", "text/event-stream")


def _guard_refusal() -> Response | None:
    """Run the host's guard (``OllamaDeck(guard=...)``); its answer, or None to go on.

    A guard such as Flask-Login's ``login_required`` answers a logged-out request with a
    redirect to the host's HTML login page: right for a browser showing a page, useless
    to a script, ``fetch()`` or ``EventSource``, which would read the login page as the
    answer. Those get a JSON 401 instead, naming the login URL. ``/healthz`` is not
    guarded unless the host asked (``guard_healthz=True``): probes carry no login.
    """
    setup = current_app.extensions.get("ollama_deck")
    guard = getattr(setup, "guard", None)
    if guard is None:
        return None
    if request.endpoint == HEALTH_ENDPOINT and not getattr(setup, "guard_healthz", False):
        return None
    try:
        # A view decorator: run it around a no-op view; an answer instead is a refusal.
        result = guard(_let_through)()
    except HTTPException as exc:  # e.g. login_required with no login view: abort(401)
        if exc.code in (401, 403) and reads_json():
            return login_refusal(exc.code, None)
        raise
    if result is None:
        return None
    response = current_app.make_response(result)
    if response.status_code in REDIRECTS and response.location and reads_json():
        return login_refusal(401, response.location)
    return response


REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _let_through() -> None:
    return None


def reads_json() -> bool:
    """Whether this request comes from a client that reads JSON or an event stream, rather
    than a browser that shows what it gets (which follows a redirect to a login page).

    Browsers say what a request is for (``Sec-Fetch-Dest``): ``empty`` is fetch, XHR or
    EventSource. Other clients are judged by ``Accept``, and when it prefers neither HTML
    nor JSON (curl's ``*/*``, or none) by the endpoint: the API, the progress routes and
    the health check answer JSON, the page and its files do not.
    """
    dest = request.headers.get("Sec-Fetch-Dest")
    if dest is not None:
        return dest == SCRIPT_DEST
    if request.headers.get("X-Requested-With", "").lower() == "xmlhttprequest":
        return True
    accept = request.accept_mimetypes
    html = accept.quality("text/html")
    machine = max(accept.quality(kind) for kind in MACHINE_TYPES)
    if machine != html:
        return machine > html
    return request.blueprint in JSON_BLUEPRINTS or request.endpoint == HEALTH_ENDPOINT


def login_refusal(status: int, login_url: str | None) -> Response:
    """The JSON answer of a guard's refusal: 401 ``login_required`` (with ``login_url``
    when the guard named its login page) or 403 ``forbidden``."""
    if status == 403:
        code, message = "forbidden", "the app this deck is part of refuses this request"
    else:
        code = "login_required"
        message = "log in to the app this deck is part of" + (
            f" at {login_url}" if login_url else ""
        )
    error: dict[str, str] = {"code": code, "message": message}
    if login_url:
        error["login_url"] = login_url
    response = jsonify({"error": error})
    response.status_code = status
    return response


def _stop_reading(environ: Mapping[str, Any]) -> None:
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:  # the client went away meanwhile
        pass


def _too_large(limit: int) -> ResponseReturnValue:
    return error_response(
        413, "body_too_large", f"the request body must not be larger than {limit} bytes"
    )


def _has_body() -> bool:
    environ = request.environ
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True  # no length to go by
    return bool(environ.get("CONTENT_LENGTH")) and bool(request.content_length)


def _read_body(limit: int, timeout: float) -> ResponseReturnValue | None:
    """Read the whole body now, within ``timeout`` seconds, so no view waits on a client.

    The servers give no deadline for a body: gunicorn's gevent worker bounds only the wait
    for headers, so a client that holds a half-sent body would hold its request forever.
    At the deadline the socket is shut for reading, which wakes the blocked read (a
    greenlet's or a thread's) with an end of stream; the answer is then a 408.
    """
    # Chunked bodies have no length to check up front: read at most one byte past the
    # limit (werkzeug stops quietly at the maximum) and refuse if that byte came.
    _limit_body(limit + 1)
    request_environ = request.environ  # the timer runs outside the request context
    request_environ[BODY_READ] = True
    sock = request_environ.get("gunicorn.socket") or request_environ.get("werkzeug.socket")
    expired = threading.Event()

    def cut_off() -> None:
        expired.set()
        _stop_reading(request_environ)

    cancel = call_later(timeout, cut_off) if sock is not None else _nothing
    try:
        if len(request.get_data(cache=True)) > limit:
            end_connection()  # the rest of an endless body stays unread
            return _too_large(limit)
    except RequestEntityTooLarge:
        end_connection()
        return _too_large(limit)
    except _cut_short_errors():
        if not expired.is_set():
            return error_response(400, "incomplete_body", "the client sent only part of the body")
    except _malformed_body_errors() as exc:
        if not expired.is_set():
            end_connection()  # where its framing broke, the next request cannot be found
            return error_response(
                400, "malformed_body", f"the request body's chunked encoding is broken: {exc}"
            )
    finally:
        cancel()
    if expired.is_set():
        request_environ[CLOSE_CONNECTION] = True
        return error_response(
            408, "body_timeout", f"the request body did not arrive within {timeout:g} seconds"
        )
    return None


def _limit_body(maximum: int) -> None:
    """Let the request's body be read only up to ``maximum`` bytes, whatever the host app's
    MAX_CONTENT_LENGTH. Flask 3.1 takes a limit per request; Flask 3.0's is read-only (the
    app's config), so there the input stream is made with the limit instead, before any
    read (werkzeug's get_input_stream, as Request.stream itself does)."""
    try:
        request.max_content_length = maximum
    except AttributeError:  # Flask 3.0
        request.stream = get_input_stream(request.environ, max_content_length=maximum)


def _nothing() -> None:
    return None


def _cut_short_errors() -> tuple[type[Exception], ...]:
    """What a read of a body that ended early raises: werkzeug's ``ClientDisconnected``,
    a reset connection, gunicorn's ``NoMoreData`` (chunked bodies)."""
    errors: list[type[Exception]] = [ClientDisconnected, ConnectionError]
    gunicorn_errors = sys.modules.get("gunicorn.http.errors")
    if gunicorn_errors is not None:  # loaded wherever gunicorn serves
        errors.append(gunicorn_errors.NoMoreData)
    return tuple(errors)


def _malformed_body_errors() -> tuple[type[Exception], ...]:
    """What a read of a body whose chunked framing is broken raises (a bad chunk size,
    extension or terminator, a malformed trailer): gunicorn's parse errors, the
    ``OSError`` or ``ValueError`` of werkzeug's development server."""
    errors: list[type[Exception]] = [ValueError, OSError]
    gunicorn_errors = sys.modules.get("gunicorn.http.errors")
    if gunicorn_errors is not None:
        errors.append(gunicorn_errors.ParseException)
    return tuple(errors)


def call_later(seconds: float, action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` after ``seconds`` unless the returned function is called first.

    Under gevent's monkey patching (gunicorn's gevent worker) this is a greenlet timer;
    elsewhere a daemon thread.
    """
    try:
        from gevent import monkey
    except ImportError:  # embedded without the serve extra: no gevent
        monkey = None
    if monkey is not None and monkey.is_module_patched("socket"):
        import gevent

        timer = gevent.spawn_later(seconds, action)
        return lambda: timer.kill(block=False)
    thread = threading.Timer(seconds, action)
    thread.daemon = True
    thread.start()
    return thread.cancel


def _local_address(environ: Mapping[str, Any]) -> str | None:
    """The address the connection came in on, where the server tells (gunicorn, werkzeug)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    try:
        return sock.getsockname()[0] if sock is not None else None
    except (OSError, IndexError, TypeError):
        return None


# ---------------------------------------------------------------- Host and Origin


def host_name(value: str) -> str | None:
    """The lower-case host name of a ``Host`` value (IPv6 without brackets); None if bad."""
    if not value or any(c in value for c in "/?#@\\ \t") or not value.isascii():
        return None
    try:
        parts = urlsplit(f"//{value}")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return parts.hostname or None


def _names(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip().lower() for v in value if str(v).strip()]


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return name == pattern[1:] or name.endswith(pattern)
    return name == (host_name(pattern) or pattern)


def is_loopback(name: str) -> bool:
    """``localhost`` or a loopback IP literal."""
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_ip(name: str, address: str | None) -> bool:
    if address is None:
        return False
    try:
        return ipaddress.ip_address(name) == ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False


def host_allowed(
    host_header: str | None, config: Mapping[str, Any], local_address: str | None
) -> bool:
    """Whether the deck answers to this ``Host``: the DNS-rebinding defence.

    A rebinding page reaches the deck under the attacker's own name, so only names the
    deck knows are its own pass: loopback names, the address the connection came in on
    and ``OLLAMA_DECK_ALLOWED_HOSTS``. A host app's ``TRUSTED_HOSTS`` takes the place of
    the loopback defaults, and its ``SERVER_NAME`` is allowed.
    """
    return _host_allowed(
        host_header,
        local_address,
        _hashable(config.get("OLLAMA_DECK_ALLOWED_HOSTS")),
        _hashable(config.get("TRUSTED_HOSTS")),
        config.get("SERVER_NAME"),
    )


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | set | frozenset) else value


def _host_allowed(
    host_header: str | None,
    local_address: Callable[[], str | None] | str | None,
    allowed: Any,
    trusted_hosts: Any,
    server_name: Any,
) -> bool:
    """``host_allowed``; ``local_address`` may be a function, asked only when the Host is
    an IP literal that nothing else allows (a ``getsockname`` per request, otherwise)."""
    verdict = _host_verdict(host_header, allowed, trusted_hosts, server_name)
    if verdict is not None:
        return verdict
    address = local_address() if callable(local_address) else local_address
    return _same_ip(host_name(host_header or "") or "", address)


# Every request asks, mostly with the same few Host headers: remembered answers save the
# parsing (a visible share of a poll's cost). Bounded, as the headers come from clients.
@lru_cache(maxsize=256)
def _host_verdict(
    host_header: str | None, allowed: Any, trusted_hosts: Any, server_name: Any
) -> bool | None:
    """Whether the Host is allowed, or None when that depends on the local address."""
    if host_header is None:
        return True  # HTTP/1.0 tools; every browser sends Host
    name = host_name(host_header)
    if name is None:
        return False
    patterns = _names(allowed)
    if "*" in patterns:
        return True
    trusted = _names(trusted_hosts)
    if server_name:
        patterns.append(str(server_name).lower())
    if trusted:
        patterns.extend(trusted)
    elif is_loopback(name):
        return True
    if any(_matches(name, p) for p in patterns):
        return True
    return None if not trusted and _is_ip(name) else False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _origin_tuple(scheme: str, host: str) -> tuple[str, str, int | None] | None:
    name = host_name(host)
    if name is None:
        return None
    port = urlsplit(f"//{host}").port
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, name, port if port is not None else default


def same_origin(
    origin: str | None, fetch_site: str | None, scheme: str, host_header: str | None
) -> bool:
    """Whether a request comes from the deck's own origin (or from no browser page at all).

    Browsers send ``Origin`` on every cross-origin request that changes something, and
    ``Sec-Fetch-Site`` on every request; tools such as curl send neither and are let in.
    """
    if origin is None:
        return fetch_site in (None, "same-origin", "none")
    if origin == "null" or host_header is None:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        return False
    theirs = _origin_tuple(parts.scheme, parts.netloc)
    ours = _origin_tuple(scheme, host_header)
    return theirs is not None and theirs == ours


# ---------------------------------------------------------------- access control


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison; hashing first hides the token's length as well."""
    # WSGI header values are latin-1 decoded bytes; this recovers the bytes that were sent.
    sent = given.encode("latin-1", errors="replace")
    return hmac.compare_digest(_digest(sent), _digest(token.encode()))


ACCESS = "ollama_deck.access"  # in the WSGI environ: the request's Access, once known
SESSION = "ollama_deck.session"  # in the WSGI environ: the LiveSession it came with


@dataclass(frozen=True)
class Access:
    """How a request proved itself: ``by`` is "token", "session" or None (it did not);
    ``wait`` > 0 when its token was not even looked at (too many wrong ones); ``token``
    the named token it brought, or opened its session with."""

    by: str | None
    wait: float = 0.0
    token: AccessToken | None = None

    @property
    def granted(self) -> bool:
        return self.by is not None

    @property
    def may_write(self) -> bool:
        return self.token is None or self.token.writes


def match_token(given: str, tokens: tuple[AccessToken, ...]) -> AccessToken | None:
    """The token ``given`` is, comparing with every one (each in constant time)."""
    found = None
    for token in tokens:
        if token_matches(given, token.secret):
            found = token
    return found


def access(tokens: tuple[AccessToken, ...]) -> Access:
    """A right bearer token, or a live session cookie; worked out once per request.

    A bearer token goes through the address's guess throttle (services/guesses.py); a
    session cookie is a random 256-bit id, never worth guessing, so it does not.
    """
    known = request.environ.get(ACCESS)
    if known is not None:
        return known
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, given = header.strip().partition(" ")
        found: list[AccessToken] = []

        def right() -> bool:
            token = match_token(given.strip(), tokens) if scheme.lower() == "bearer" else None
            if token is not None:
                found.append(token)
            return token is not None

        ok, wait = setup_of(current_app).guesses.attempt(request.remote_addr, right)
        verdict = Access("token", wait, found[0]) if ok and found else Access(None, wait)
    else:
        cookie = request.cookies.get(session_cookie_name())
        session = deck().sessions.check(cookie, tokens) if cookie else None
        if session is not None:
            request.environ[SESSION] = session
            verdict = Access("session", token=session.token)
        else:
            verdict = Access(None)
    request.environ[ACCESS] = verdict
    return verdict


def _read_only(verdict: Access) -> ResponseReturnValue:
    name = verdict.token.name if verdict.token is not None else "?"
    return error_response(
        403,
        "read_only_token",
        f"the token {name!r} may only read (role {Role.READ}); this needs a token with "
        f"role {Role.WRITE}",
    )


def _unauthorized(verdict: Access) -> ResponseReturnValue:
    if verdict.wait > 0:
        seconds = math.ceil(verdict.wait)
        response, status = error_response(
            429,
            "too_many_wrong_tokens",
            f"too many wrong tokens from this address: the next one is looked at in {seconds} s",
        )
        response.headers["Retry-After"] = str(seconds)
        return response, status
    response, status = error_response(
        401,
        "unauthorized",
        "this service needs a token: send 'Authorization: Bearer <token>'",
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="ollama-deck"'
    return response, status


def may_see_details() -> bool:
    """Whether this request may see what /healthz knows (URLs, database errors): anyone
    who could use the API. An open deck's API shows as much; with a token, only those
    who bring it (or a live session); behind a host's guard, those it lets in."""
    tokens = current_settings().access_tokens
    if tokens:
        try:
            return access(tokens).granted
        except DATABASE_ERRORS:
            return False  # the session cannot be checked now: no details
    setup = current_app.extensions.get("ollama_deck")
    guard = getattr(setup, "guard", None)
    if guard is None or getattr(setup, "guard_healthz", False):
        return True  # an open deck, or the guard let this request in already
    # /healthz answered without the guard (probes carry no login): ask it now, only to
    # choose what to show.
    try:
        return guard(_let_through)() is None
    except HTTPException:
        return False


def session_cookie_name() -> str:
    """``ollama_deck_session_<port>``, plus ``_<prefix>`` when the deck is mounted under one.

    Browsers keep cookies per host name, not per port: two decks on one host would
    otherwise overwrite each other's session (and send each other theirs by name).
    """
    default = 443 if request.scheme == "https" else 80
    try:
        port = urlsplit(f"//{request.host}").port or default
    except ValueError:  # refused by the Host check before any session is looked at
        port = default
    slug = re.sub(r"[^A-Za-z0-9]+", "_", setup_of(current_app).url_prefix).strip("_")
    return f"ollama_deck_session_{port}" + (f"_{slug}" if slug else "")


def session_status() -> dict[str, Any]:
    """What the page needs to know; only reached once the request passed the checks:
    whether a token is required, and the name and role of the one this request brought
    (role ``write`` where the deck asks for no token)."""
    tokens = current_settings().access_tokens
    verdict = request.environ.get(ACCESS)
    token = verdict.token if isinstance(verdict, Access) else None
    return {
        "token_required": bool(tokens),
        "token": token.name if token is not None else None,
        "role": str(token.role if token is not None else Role.WRITE),
    }


def issue_session(response: Response) -> None:
    """Trade a checked bearer token for a new session: a random id in an HttpOnly,
    SameSite=Strict cookie (EventSource sends it), Secure over https.

    Only a token opens one: a session presented here is not renewed, so it cannot
    outlive its absolute end by logging in again with itself.
    """
    settings = current_settings()
    tokens = settings.access_tokens
    if not tokens:
        return
    verdict = access(tokens)
    if verdict.by != "token" or verdict.token is None:
        return
    session_id, _ = deck().sessions.open(verdict.token)
    response.set_cookie(
        session_cookie_name(),
        session_id,
        max_age=max(1, int(settings.session_max_age)),
        path=setup_of(current_app).url_prefix or "/",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )


def revoke_session(response: Response) -> None:
    """End the request's session for every worker (logout) and drop its cookie."""
    name = session_cookie_name()
    cookie = request.cookies.get(name)
    if cookie and current_settings().access_tokens:
        deck().sessions.close(cookie)
    response.delete_cookie(
        name,
        path=setup_of(current_app).url_prefix or "/",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )


def session_bound(frames: Iterator[T]) -> Iterator[T]:
    """An event stream that ends once the session it was opened with has ended (logout,
    expiry, idle): see SessionStore.bounded for how soon."""
    session = request.environ.get(SESSION)
    if session is None:
        return frames  # a bearer token, or no token at all: nothing that ends mid-stream
    return deck().sessions.bounded(frames, session)


# ---------------------------------------------------------------- serving


def bind_refusal(host: str, token: str | bool | None, insecure: bool) -> str | None:
    """Why ``ollama-deck serve`` must not bind ``host``, or None when it may (``token``:
    whether, or which, a token is required)."""
    name = host.strip("[]").lower()
    if insecure or token or is_loopback(name):
        return None
    return (
        f"ollama-deck: refusing to serve on {host} without a token. Other machines can "
        "reach that address, and anyone who does could pull, delete and load models. "
        "Set OLLAMA_DECK_TOKEN (or OLLAMA_DECK_TOKENS) to require 'Authorization: Bearer "
        "<token>', or pass "
        "--insecure to serve without one (for example behind a proxy that authenticates)."
    )


# ---------------------------------------------------------------- headers


PAGE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", PAGE_CSP),
    ("X-Frame-Options", "DENY"),
)
API_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", API_CSP),
)


def add_headers(response: Response) -> Response:
    """Security headers: a strict CSP on the page and its files; API answers never cached.
    A header the view set stays as it is, but for ``Cache-Control`` on API answers."""
    if request.environ.get(CLOSE_CONNECTION):
        response.__class__ = _closing(type(response))  # type: ignore[arg-type]
    headers = response.headers
    # One pass over the few headers there are: werkzeug's setdefault raises and catches a
    # KeyError for each one that is absent.
    present = {name.lower() for name in headers.keys()}
    page = request.blueprint == PAGE_BLUEPRINT
    for name, value in PAGE_HEADERS if page else API_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    if not page:
        if "cache-control" in present:
            headers["Cache-Control"] = "no-store"
        else:
            headers.add("Cache-Control", "no-store")
    return response


@functools.cache
def _closing(cls: type[Response]) -> type[Response]:
    """``cls``, but asking the server to close the connection once it has been sent.

    WSGI has no way to say so (servers drop a ``Connection`` header from the app), but
    gunicorn's ``start_response`` belongs to its response object, whose ``force_close``
    does it. Other servers are left as they are (werkzeug's closes every connection).
    """

    def __call__(self: Response, environ: Any, start_response: Callable[..., Any]) -> Any:
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
        if callable(force_close):
            force_close()
        return cls.__call__(self, environ, start_response)

    return type(f"Closing{cls.__name__}", (cls,), {"__call__": __call__})
