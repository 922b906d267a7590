"""Pull control: paused and scheduled operations.

Four columns on operations (``not_before``, ``starts_at``, ``paused_by``, ``paused_at``),
and the one-active-per-model index rebuilt over the statuses that hold a model now:
``scheduled`` and ``paused`` too, so a second pull of a paused model joins it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "ollama_deck_operation"
INDEX = "ollama_deck_one_active_per_model"
# Written out, not imported: a migration must keep doing what it did when it shipped.
ACTIVE_BEFORE = "status IN ('queued', 'running')"
ACTIVE_AFTER = "status IN ('queued', 'scheduled', 'running', 'paused')"
# name -> type; every one nullable: existing rows have none of them.
COLUMNS: dict[str, sa.types.TypeEngine] = {
    "not_before": sa.Float(),
    "starts_at": sa.Float(),
    "paused_by": sa.String(16),
    "paused_at": sa.Float(),
}


def _one_active_per_model(where: str) -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(
        INDEX,
        TABLE,
        ["host", "model_key"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    for name, kind in COLUMNS.items():
        op.add_column(TABLE, sa.Column(name, kind, nullable=True))
    _one_active_per_model(ACTIVE_AFTER)


def downgrade() -> None:
    # Paused and scheduled operations mean nothing to the older code: they wait again.
    op.execute(
        sa.text(f"UPDATE {TABLE} SET status = 'queued' WHERE status IN ('scheduled', 'paused')")
    )
    _one_active_per_model(ACTIVE_BEFORE)
    with op.batch_alter_table(TABLE) as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
