"""Serving entry point: ``gunicorn -k gevent -w 1 wsgi:app`` (or ``ollama-deck serve``)."""

from ollama_deck import create_app

app = create_app()
