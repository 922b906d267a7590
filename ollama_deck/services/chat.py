"""A test prompt against a model, as Server-Sent Events of its reply."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from ..errors import DeckError
from .events import format_event
from .events import retry_frame
from .ollama import OllamaClient


def open_chat(client: OllamaClient, model: str, messages: list[dict[str, Any]]) -> Iterator[bytes]:
    """Start the chat now, so a missing model or a down or hung Ollama raises before any
    byte is sent.

    Returns the SSE frames: ``token`` per piece of the reply, then ``done`` with Ollama's
    counters, or ``error`` if the stream fails after it started.
    """
    # Ollama answers a chat only once the model is in memory, which can take a while, so
    # the first word may wait for the stall timeout; a hung Ollama is found out here,
    # within the quick timeout, instead (OllamaTimeout, 504).
    client.version()
    stack = ExitStack()
    lines = stack.enter_context(client.chat(model, messages))
    return _frames(stack, lines, model)


def _frames(stack: ExitStack, lines: Iterable[dict[str, Any]], model: str) -> Iterator[bytes]:
    with stack:
        yield retry_frame()
        index = 0
        try:
            for line in lines:
                if line.get("error"):
                    yield error_event("ollama_error", str(line["error"]))
                    return
                content = (line.get("message") or {}).get("content") or ""
                if content:
                    yield format_event(index, "token", {"content": content})
                    index += 1
                if line.get("done"):
                    yield format_event(index, "done", reply_stats(line, model))
                    return
        except DeckError as exc:
            yield error_event(exc.code, exc.message)
            return
        yield error_event("incomplete_reply", "Ollama ended the reply without done")


def error_event(code: str, message: str) -> bytes:
    """The one shape of the stream's ``error`` events (schemas.ChatError)."""
    return format_event(None, "error", {"code": code, "message": message})


def reply_stats(line: dict[str, Any], model: str) -> dict[str, Any]:
    """Token counts and speed from Ollama's final line (durations are nanoseconds)."""
    eval_count = line.get("eval_count") or 0
    eval_ns = line.get("eval_duration") or 0
    return {
        "model": model,
        "done_reason": line.get("done_reason"),
        "prompt_tokens": line.get("prompt_eval_count"),
        "tokens": eval_count,
        "tokens_per_second": round(eval_count / eval_ns * 1e9, 2) if eval_ns else None,
        "total_seconds": round((line.get("total_duration") or 0) / 1e9, 3),
        "load_seconds": round((line.get("load_duration") or 0) / 1e9, 3),
    }
