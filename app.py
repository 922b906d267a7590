"""Development entry point: ``flask --app app run``."""

from ollama_deck import create_app

app = create_app()
