"""Alembic environment of the deck's own migrations.

Run only through ``ollama_deck.schema``, which hands over an open connection (already in a
transaction and holding the upgrade lock) and names the deck's own version table, so this
history never mixes with a host application's.
"""

from __future__ import annotations

from alembic import context

from ollama_deck.db import Base
from ollama_deck.db import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    # SQLite changes tables by copying them; "batch" mode does that for ALTERs.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
