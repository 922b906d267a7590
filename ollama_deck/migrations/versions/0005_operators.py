"""Operators' view: /metrics' tallies, the webhook outbox, the activity record, and the
token name of a session.

The tallies start empty: /metrics counts what ends from this version on (Prometheus reads
rates, so a counter needs no history).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ollama_deck.migrations import ops

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # migrations/ops.py: a host's create_all may have made these already.
    ops.create_table(
        "ollama_deck_tally",
        sa.Column("metric", sa.String(60), primary_key=True),
        sa.Column("labels", sa.String(1000), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    ops.create_table(
        "ollama_deck_webhook_delivery",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claimed_by", sa.String(120), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("last_attempt_at", sa.Float(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
    )
    ops.create_index(
        "ix_ollama_deck_webhook_delivery_operation_id",
        "ollama_deck_webhook_delivery",
        ["operation_id"],
    )
    ops.create_index(
        "ix_ollama_deck_webhook_delivery_created_at",
        "ollama_deck_webhook_delivery",
        ["created_at"],
    )
    ops.create_index(
        "ollama_deck_webhook_due", "ollama_deck_webhook_delivery", ["status", "next_attempt_at"]
    )
    ops.create_table(
        "ollama_deck_activity",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(600), nullable=True),
        sa.Column("host", sa.String(600), nullable=True),
        sa.Column("operation_id", sa.String(36), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(60), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("token", sa.String(40), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
    )
    ops.create_index("ix_ollama_deck_activity_at", "ollama_deck_activity", ["at"])
    ops.create_index("ix_ollama_deck_activity_action", "ollama_deck_activity", ["action"])
    ops.create_index("ix_ollama_deck_activity_actor", "ollama_deck_activity", ["actor"])
    ops.add_column("ollama_deck_session", sa.Column("token_name", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ollama_deck_session") as batch:
        batch.drop_column("token_name")
    op.drop_table("ollama_deck_activity")
    op.drop_table("ollama_deck_webhook_delivery")
    op.drop_table("ollama_deck_tally")
