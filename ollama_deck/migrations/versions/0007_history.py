"""History that does not cost: indexes for the listing of operations and for the purge.

``GET /progress`` lists the newest operations first, a page at a time (``created_at``,
then ``id`` between operations created at the same moment); the purge looks for
finished ones by age and beyond the newest ``OLLAMA_DECK_KEEP_FINISHED_COUNT``
(``finished_at``, then ``seq``). Without them, both scanned and sorted the whole table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from ollama_deck.migrations import ops

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # migrations/ops.py: a host's create_all may have made these already.
    ops.create_index(
        "ix_ollama_deck_operation_created_at", "ollama_deck_operation", ["created_at", "id"]
    )
    ops.create_index(
        "ix_ollama_deck_operation_finished_at", "ollama_deck_operation", ["finished_at", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_ollama_deck_operation_finished_at", "ollama_deck_operation")
    op.drop_index("ix_ollama_deck_operation_created_at", "ollama_deck_operation")
