"""A pytest plugin: the ``fake_ollama`` fixture.

Load it with ``pytest_plugins = ["ollama_deck.testing.pytest_plugin"]`` in a conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import FakeOllama


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama: a real HTTP server on an ephemeral 127.0.0.1 port, stopped after."""
    with FakeOllama() as fake:
        yield fake
