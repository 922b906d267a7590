"""A pull after a cancel makes a new operation: the one-per-model rule splits in two.

Before, one index allowed one active operation (queued, scheduled, running or paused) per
(host, model), so a pull that came while a cancel wound down joined the operation being
cancelled and ended ``cancelled`` with it. Now:

- ``ollama_deck_one_joinable_per_model``: at most one active operation per (host, model)
  that nobody asked to cancel: the one new requests join;
- ``ollama_deck_one_running_per_model``: at most one running per (host, model): one stream
  from Ollama per model, so the new operation waits queued until the cancelled stream
  closed (the claim skips it meanwhile; this index is the database's own guarantee).

Downgrading fails while a cancelled-but-running operation and its successor both exist.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ollama_deck.migrations import ops

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "ollama_deck_operation"
# Written out, not imported: a migration must keep doing what it did when it shipped.
ACTIVE_NAMES = ("queued", "scheduled", "running", "paused")
ACTIVE = sa.column("status").in_(ACTIVE_NAMES)
# An expression, not text: each dialect writes "not cancelled" its own way (SQLite
# "cancel_requested = 0", PostgreSQL "NOT cancel_requested"), as create_all does from db.py.
JOINABLE = ACTIVE & ~sa.column("cancel_requested", sa.Boolean)
RUNNING = sa.column("status") == "running"


def _partial_index(name: str, where: sa.ColumnElement[bool]) -> None:
    # migrations/ops.py: a host's create_all of this version made these already.
    ops.create_index(
        name,
        TABLE,
        ["host", "model_key"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(TABLE)}
    if "ollama_deck_one_active_per_model" in indexes:  # not made by this version's create_all
        op.drop_index("ollama_deck_one_active_per_model", table_name=TABLE)
    _partial_index("ollama_deck_one_joinable_per_model", JOINABLE)
    _partial_index("ollama_deck_one_running_per_model", RUNNING)


def downgrade() -> None:
    op.drop_index("ollama_deck_one_running_per_model", table_name=TABLE)
    op.drop_index("ollama_deck_one_joinable_per_model", table_name=TABLE)
    _partial_index("ollama_deck_one_active_per_model", ACTIVE)
