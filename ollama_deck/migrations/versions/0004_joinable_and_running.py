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

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "ollama_deck_operation"
# Written out, not imported: a migration must keep doing what it did when it shipped.
ACTIVE = "status IN ('queued', 'scheduled', 'running', 'paused')"
JOINABLE = f"{ACTIVE} AND NOT cancel_requested"
RUNNING = "status = 'running'"


def _partial_index(name: str, where: str) -> None:
    op.create_index(
        name,
        TABLE,
        ["host", "model_key"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.drop_index("ollama_deck_one_active_per_model", table_name=TABLE)
    _partial_index("ollama_deck_one_joinable_per_model", JOINABLE)
    _partial_index("ollama_deck_one_running_per_model", RUNNING)


def downgrade() -> None:
    op.drop_index("ollama_deck_one_running_per_model", table_name=TABLE)
    op.drop_index("ollama_deck_one_joinable_per_model", table_name=TABLE)
    _partial_index("ollama_deck_one_active_per_model", ACTIVE)
