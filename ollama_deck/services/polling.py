"""Answers to ``GET /progress/<id>``, the endpoint that curl loops and scripts poll.

Polls far outnumber changes: a pull changes its row a few times a second at most, while any
number of clients ask several times a second. So each answer is rendered once per version
of the operation and kept (a few hundred, newest used first). The version is the
operation's sequence number, which moves with every committed change of the operation and
its log. While the bus is live, the hub's version book (``events.VersionBook``) knows it
and a poll reads nothing; otherwise a poll reads it, one small statement.

With one process (the local bus) no answer is older than the last commit. With Redis,
another process's commit shows once its event arrived, as on the event streams: a few
milliseconds; this process's own commits show at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .events import VersionBook
from .store import OperationStore

Render = Callable[[dict[str, Any], list[dict[str, Any]]], bytes]


class PollAnswers:
    """Rendered poll answers keyed by (operation, log lines asked for, version)."""

    def __init__(
        self,
        store: OperationStore,
        capacity: int = 512,
        *,
        versions: VersionBook | None = None,
        live: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.versions = versions or VersionBook()
        self.live = live  # the bus's word that the book has heard every commit
        self._answers: OrderedDict[tuple[str, int], tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def answer(self, op_id: str, log_limit: int, render: Render) -> bytes | None:
        """The answer for the operation as committed now; None when there is no such one."""
        book = self.versions
        live = self.live()
        generation = book.generation
        version = book.known(op_id) if live else None
        if version is None:
            version = self.store.version(op_id)
            if version is None:
                return None
            if live:
                book.learn(op_id, version, generation)
        key = (op_id, log_limit)
        with self._lock:
            cached = self._answers.get(key)
            # Newer than the book is fine: it was read from the database.
            if cached is not None and cached[0] >= version:
                self._answers.move_to_end(key)
                self.hits += 1
                return cached[1]
        row, logs = self.store.get_with_logs(op_id, log_limit)
        if row is None:
            return None
        if live:
            book.learn(op_id, row["seq"], generation)
        body = render(row, logs)
        with self._lock:
            self.misses += 1
            current = self._answers.get(key)
            if current is None or current[0] <= row["seq"]:
                self._answers[key] = (row["seq"], body)
                self._answers.move_to_end(key)
            while len(self._answers) > self.capacity:
                self._answers.popitem(last=False)
        return body
