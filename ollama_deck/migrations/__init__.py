"""The deck's Alembic migrations (``env.py``, ``versions/``) and the steps they are written
with (``ops.py``); run only through ``ollama_deck.schema``."""
