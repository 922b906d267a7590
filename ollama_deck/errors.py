"""Our exceptions: each carries the HTTP status and a stable code for the JSON error."""

from __future__ import annotations


class DeckError(Exception):
    """An error a user should see as ``{"error": {"code", "message"}}``."""

    status = 500
    code = "internal_error"
    retry_after: float | None = None  # seconds, sent as Retry-After when set

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadRequest(DeckError):
    status = 400
    code = "bad_request"


class NotFound(DeckError):
    status = 404
    code = "not_found"


class Conflict(DeckError):
    status = 409
    code = "conflict"


class QueueFull(DeckError):
    """Too many operations wait already; the client should come back later."""

    status = 429
    code = "queue_full"
    retry_after = 10.0


class DatabaseUnavailable(DeckError):
    """The database cannot be read or written right now."""

    status = 503
    code = "database_unavailable"
    retry_after = 5.0


class OllamaUnavailable(DeckError):
    """Ollama refused or dropped the connection."""

    status = 503
    code = "ollama_unavailable"


class OllamaTimeout(DeckError):
    """Ollama accepted the connection but did not answer in time."""

    status = 504
    code = "ollama_timeout"


class OllamaError(DeckError):
    """Ollama answered with an error; ``message`` is Ollama's own text."""

    status = 502
    code = "ollama_error"

    def __init__(self, message: str, *, ollama_status: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.ollama_status = ollama_status


class ModelNotFound(OllamaError):
    """Ollama says the model does not exist (its 404)."""

    status = 404
    code = "model_not_found"
