"""Memory given back after many event streams closed (services/memory.py)."""

from __future__ import annotations

from ollama_deck.services import memory
from ollama_deck.services.memory import StreamMemory


def test_a_large_drop_in_watchers_trims_once_and_small_ones_do_not(monkeypatch):
    trimmed: list[int] = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: trimmed.append)
    watch = StreamMemory(drop=500)
    for count in (0, 300, 5000, 4800, 4600):  # rising, then a drop smaller than 500
        assert watch.check(count) is False
    assert watch.check(4000) is True  # 1,000 fewer than the peak
    assert trimmed == [0]
    assert watch.check(3800) is False  # measured from the last trim, not the old peak
    assert watch.check(3400) is True
    assert watch.trims == 2


def test_without_glibc_nothing_is_trimmed(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    watch = StreamMemory(drop=10)
    watch.check(100)
    assert watch.check(0) is False and watch.trims == 0


def test_glibc_trim_is_found_here():
    memory._malloc_trim.cache_clear()
    assert memory._malloc_trim() is not None  # the deck's machines and CI run glibc
