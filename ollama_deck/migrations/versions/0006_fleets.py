"""Fleets: groups of operations across hosts, a stored desired model set, leases.

A ``children`` column on operations (a group's children and their outcomes, as JSON), the
group membership table, the stored desired model set and named leases (the reconciler's).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ollama_deck.migrations import ops

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # migrations/ops.py: a host's create_all may have made these already.
    ops.add_column("ollama_deck_operation", sa.Column("children", sa.Text(), nullable=True))
    ops.create_table(
        "ollama_deck_group_member",
        sa.Column("group_id", sa.String(36), primary_key=True),
        sa.Column("operation_id", sa.String(36), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    ops.create_index(
        "ix_ollama_deck_group_member_operation_id", "ollama_deck_group_member", ["operation_id"]
    )
    ops.create_table(
        "ollama_deck_desired_models",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    ops.create_table(
        "ollama_deck_lease",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ollama_deck_lease")
    op.drop_table("ollama_deck_desired_models")
    op.drop_index("ix_ollama_deck_group_member_operation_id", "ollama_deck_group_member")
    op.drop_table("ollama_deck_group_member")
    # Not in batch mode: copying the table would lose the partial index's WHERE on SQLite;
    # SQLite drops a column itself since 3.35.
    op.drop_column("ollama_deck_operation", "children")
