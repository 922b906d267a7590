"""Waits that grow, until a deadline: one helper for every retry loop of the runner."""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    """Delays from ``start`` multiplied by ``factor`` up to ``cap``, for ``seconds`` in all.

    ``next()`` is the wait before the next try, shortened so as not to pass the deadline,
    or None once it has passed: the caller gives up then.
    """

    def __init__(
        self,
        start: float,
        *,
        cap: float,
        seconds: float,
        factor: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delay = start
        self.cap = cap
        self.factor = factor
        self.clock = clock
        self.deadline = clock() + seconds
        self.tries = 0  # how many waits were handed out

    def next(self) -> float | None:
        """The next wait in seconds, or None when the time is up."""
        left = self.deadline - self.clock()
        if left <= 0:
            return None
        wait = min(self.delay, left)
        self.delay = min(self.delay * self.factor, self.cap)
        self.tries += 1
        return wait
