"""Development entry point: ``flask --app app run``."""

import os
import sys

from ollama_deck import create_app
from ollama_deck.schema import describe_url

app = create_app()
if os.environ.get("WERKZEUG_RUN_MAIN") != "true":  # the reloader's child: its parent said it
    database = describe_url(app.config["OLLAMA_DECK_DATABASE_URL"])
    print(f"ollama-deck: database {database}", file=sys.stderr)
