"""The SSE wire format and the in-process hub, without a server."""

from __future__ import annotations

import threading

from ollama_deck.services.events import coalesce
from ollama_deck.services.events import comment_frame
from ollama_deck.services.events import EventHub
from ollama_deck.services.events import format_event
from ollama_deck.services.events import make_event
from ollama_deck.services.events import retry_frame


def test_event_frame_is_one_message():
    frame = format_event(7, "progress", {"model": "llama3.2:1b", "note": "line\nbreak"})
    assert frame == (
        b'id: 7\nevent: progress\ndata: {"model":"llama3.2:1b","note":"line\\nbreak"}\n\n'
    )


def test_event_without_id_and_non_ascii_text():
    frame = format_event(None, "token", {"content": "héllo"})
    assert frame == 'event: token\ndata: {"content":"héllo"}\n\n'.encode()


def test_retry_and_comment_frames():
    assert retry_frame(2500) == b"retry: 2500\n\n"
    assert comment_frame() == b": keep-alive\n\n"


def test_readers_keep_their_own_cursor():
    hub = EventHub()
    start = hub.position()
    hub.publish([make_event(1, "a", "progress", {}), make_event(2, "a", "log", {})])
    events, position, lost = hub.read(start)
    assert [e.seq for e in events] == [1, 2] and not lost
    hub.publish([make_event(3, "b", "progress", {})])
    events, _, _ = hub.read(position)
    assert [e.seq for e in events] == [3]
    # Another reader that started at the beginning still sees everything.
    assert [e.seq for e in hub.read(start)[0]] == [1, 2, 3]


def test_a_reader_that_fell_behind_is_told():
    hub = EventHub(capacity=8)
    start = hub.position()
    for seq in range(1, 40):
        hub.publish([make_event(seq, "a", "progress", {})])
    events, _, lost = hub.read(start)
    assert lost
    assert events[-1].seq == 39


def test_wait_wakes_on_publish_and_on_the_heartbeat_tick():
    hub = EventHub(heartbeat_seconds=0.01)
    position = hub.position()
    assert hub.wait(position) is False  # woken by the tick: nothing new
    hub.close()

    hub = EventHub(heartbeat_seconds=60)
    woke = threading.Event()

    def waiter():
        if hub.wait(position):
            woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    hub.publish([make_event(1, "a", "progress", {})])
    thread.join(10)
    assert woke.is_set()
    # Already published: returns at once without waiting.
    assert hub.wait(position) is True
    hub.close()


def test_coalesce_keeps_logs_and_the_newest_state_per_operation():
    events = [
        make_event(1, "a", "progress", {"p": 1}),
        make_event(2, "a", "log", {}),
        make_event(3, "b", "progress", {"p": 1}),
        make_event(4, "a", "progress", {"p": 2}),
        make_event(5, "b", "done", {}),
    ]
    assert [e.seq for e in coalesce(events)] == [2, 3, 4, 5]
    assert coalesce(events[:3]) == events[:3]


def test_closing_the_hub_releases_its_watchers():
    hub = EventHub(heartbeat_seconds=60)
    done = threading.Event()

    def waiter():
        hub.wait(hub.position())
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    hub.close()
    thread.join(10)
    assert done.is_set()
    assert hub.closed and hub.wait(hub.position()) is False
