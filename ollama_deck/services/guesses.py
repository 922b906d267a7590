"""A growing wait between wrong tokens from one client address.

After a few free mistakes (typos), each wrong token makes its address wait before the next
token it sends is even looked at: one second, then twice as long each time, up to a
minute. A token sent during the wait is not checked at all (the answer is 429 with
Retry-After), so a guesser gets at most one answer per wait however many connections it
opens, and no request ever sleeps: the wait costs the server nothing, under gevent or
threads. A right token clears its address.

The record lives in this process, on purpose. Keeping it in the database would turn every
request without a valid token into a write, which anyone could send to contend with the
deck's real writes (SQLite has one writer); Redis is optional. With W worker processes a
guesser reaches at most W records, so at most W answers per wait: still about one a
minute per worker after a dozen wrong tokens, against ~1,200 a second before. Addresses
are bounded in number and forgotten after a quiet spell.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_MISTAKES = 5  # wrong tokens an address may send before it has to wait
FIRST_WAIT = 1.0  # seconds after the first mistake past the free ones; doubles each time
MAX_WAIT = 60.0
FORGET_AFTER = 15 * 60.0  # an address without mistakes for this long starts afresh
MAX_ADDRESSES = 10_000  # the oldest records go first beyond this


@dataclass
class _Record:
    mistakes: int = 0
    wait_until: float = 0.0
    last: float = 0.0


def client_key(address: str | None) -> str:
    """Whom a record is about: the address, or its /64 for IPv6 (one host's share)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def wait_after(mistakes: int) -> float:
    """Seconds an address waits after its ``mistakes``-th wrong token."""
    if mistakes <= FREE_MISTAKES:
        return 0.0
    return min(MAX_WAIT, FIRST_WAIT * 2 ** (mistakes - FREE_MISTAKES - 1))


class GuessThrottle:
    """Per-address records of wrong tokens in this process; thread- and greenlet-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._records: OrderedDict[str, _Record] = OrderedDict()  # oldest mistake first

    def attempt(self, address: str | None, check: Callable[[], bool]) -> tuple[bool, float]:
        """Run ``check`` (is the token right?) unless the address must wait.

        Returns (right, wait): ``wait`` > 0 means the token was not looked at and the
        client may try again in that many seconds. The check runs under the lock, so
        concurrent requests of one address cannot all slip through one free moment.
        """
        key = client_key(address)
        with self._lock:
            now = self.clock()
            record = self._records.get(key)
            if record is not None and now - record.last >= FORGET_AFTER:
                del self._records[key]
                record = None
            if record is not None and now < record.wait_until:
                return False, record.wait_until - now
            if check():
                if record is not None:
                    del self._records[key]
                return True, 0.0
            if record is None:
                record = self._records[key] = _Record()
                while len(self._records) > MAX_ADDRESSES:
                    self._records.popitem(last=False)
            record.mistakes += 1
            record.last = now
            record.wait_until = now + wait_after(record.mistakes)
            self._records.move_to_end(key)
            return False, 0.0
