"""POST one webhook delivery and say how it went; knows nothing of the outbox.

Bounded: each connect and each read waits at most ``timeout`` seconds, at most 1 KB of
the receiver's answer is read, and at most three redirects are followed, each only to the
same host (``http`` may become ``https``, never the reverse): a redirect elsewhere is
refused, since the URLs are the configuration's and nothing else may choose where a
signed body goes.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from urllib.parse import urljoin
from urllib.parse import urlsplit

import requests

from .webhooks import DELIVERY_HEADER
from .webhooks import EVENT_HEADER
from .webhooks import sign
from .webhooks import SIGNATURE_HEADER

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Answers that say "later", not "never".
RETRY_STATUSES = frozenset({408, 425, 429})
MAX_REDIRECTS = 3
ANSWER_BYTES = 1024


def worst_case_seconds(timeout: float) -> float:
    """The longest one send can take: a connect and an answer for each hop, and a margin."""
    return (MAX_REDIRECTS + 1) * 2 * timeout + 5


@dataclass(frozen=True)
class Attempt:
    """How one send went: ``error`` None when the receiver took it (2xx); ``final`` when
    trying again cannot help (a 4xx, a redirect to another host)."""

    status: int | None
    error: str | None = None
    final: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def same_host(url: str, target: str) -> bool:
    """Whether a redirect from ``url`` to ``target`` stays on the host (and on https)."""
    a, b = urlsplit(url), urlsplit(target)
    if b.scheme not in ("http", "https") or (a.scheme == "https" and b.scheme != "https"):
        return False
    return bool(b.hostname) and a.hostname == b.hostname


class WebhookSender:
    """Sends deliveries over one pooled HTTP session."""

    def __init__(self, *, secret: str | None, timeout: float, user_agent: str) -> None:
        self.secret = secret
        self.timeout = timeout
        self.user_agent = user_agent
        self.session = requests.Session()

    def send(self, url: str, delivery_id: str, event: str, body: bytes) -> Attempt:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=(self.timeout, self.timeout),
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as exc:
                return Attempt(None, _describe(exc))
            with closing(response):
                status = response.status_code
                if status in REDIRECTS:
                    target = urljoin(url, response.headers.get("Location", ""))
                    if not same_host(url, target):
                        where = urlsplit(target).hostname or "nowhere"
                        return Attempt(
                            status, f"redirected to another host ({where}): not followed", True
                        )
                    url = target
                    continue
                if 200 <= status < 300:
                    return Attempt(status)
                retry = status >= 500 or status in RETRY_STATUSES
                answer = _start_of(response)
                error = f"HTTP {status}" + (f": {answer}" if answer else "")
                return Attempt(status, error, not retry, _retry_after(response))
        return Attempt(None, f"more than {MAX_REDIRECTS} redirects", True)

    def close(self) -> None:
        self.session.close()


def _start_of(response: requests.Response) -> str:
    try:
        raw = response.raw.read(ANSWER_BYTES, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - only a hint for the record
        return ""
    return " ".join(raw.decode("utf-8", errors="replace").split())[:200]


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "the receiver did not accept a connection in time"
    if isinstance(exc, requests.Timeout):
        return "the receiver did not answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "the receiver is not reachable"
    return f"the request failed: {type(exc).__name__}"
