"""A small SSE client for the tests: reads a stream over a real socket, event by event."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Event:
    id: int | None
    event: str
    data: Any
    comment: str | None = None


class SSEClient:
    """Opens ``url`` and parses the event stream as it arrives."""

    def __init__(
        self,
        url: str,
        *,
        last_event_id: int | None = None,
        timeout: float = 10,
        comments: bool = False,
    ):
        self.comments = comments  # return comment lines (": worker 123") as events too
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.response = requests.get(url, headers=headers, stream=True, timeout=timeout)
        self._lines = self.response.iter_lines(chunk_size=1)
        self.retry: int | None = None

    def next(self) -> Event | None:
        """The next event or comment; None when the server ended the stream."""
        fields: dict[str, str] = {}
        for raw in self._lines:
            line = raw.decode()
            if line == "":
                if fields:
                    if set(fields) == {"retry"}:
                        self.retry = int(fields["retry"])
                        fields = {}
                        continue
                    if set(fields) == {""} and not self.comments:
                        fields = {}
                        continue
                    return Event(
                        id=int(fields["id"]) if "id" in fields else None,
                        event=fields.get("event", "message"),
                        data=json.loads(fields["data"]) if "data" in fields else None,
                        comment=fields.get(""),
                    )
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        return None

    def read_until(self, predicate, timeout: float = 15.0) -> list[Event]:
        """Events up to and including the first that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        events = []
        while time.monotonic() < deadline:
            event = self.next()
            if event is None:
                raise AssertionError(f"stream ended before the condition; got {events!r}")
            events.append(event)
            if predicate(event):
                return events
        raise AssertionError(f"condition not met within {timeout} s; got {events!r}")

    def read_to_end(self, timeout: float = 15.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        events = []
        while time.monotonic() < deadline:
            event = self.next()
            if event is None:
                return events
            events.append(event)
        raise AssertionError(f"stream did not end within {timeout} s")

    def close(self) -> None:
        self.response.close()
