"""The schema of Ollama Deck 0.1.0.

A database made by 0.1.0 (which created these tables itself), by a host's create_all or
by a host's own migration goes through this revision too: each step finds its table or
index made already and leaves it (migrations/ops.py), and the counter gets its row.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ollama_deck.migrations import ops

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = "status IN ('queued', 'running')"


def upgrade() -> None:
    ops.create_table(
        "ollama_deck_operation",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(600), nullable=False),
        sa.Column("model_key", sa.String(600), nullable=False),
        sa.Column("host", sa.String(600), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("completed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("speed", sa.Float(), nullable=True),
        sa.Column("eta_seconds", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("runner_id", sa.String(120), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    ops.create_index("ix_ollama_deck_operation_status", "ollama_deck_operation", ["status"])
    ops.create_index("ix_ollama_deck_operation_seq", "ollama_deck_operation", ["seq"])
    # At most one active operation per (host, model), held by the database itself.
    ops.create_index(
        "ollama_deck_one_active_per_model",
        "ollama_deck_operation",
        ["host", "model_key"],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )
    ops.create_table(
        "ollama_deck_operation_log",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("operation_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    )
    ops.create_index(
        "ix_ollama_deck_operation_log_operation_id", "ollama_deck_operation_log", ["operation_id"]
    )
    ops.create_table(
        "ollama_deck_installed_model",
        sa.Column("host", sa.String(600), primary_key=True),
        sa.Column("name", sa.String(600), primary_key=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
    )
    ops.create_table(
        "ollama_deck_setting",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    counter = ops.create_table(
        "ollama_deck_counter",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    # Adopted tables may hold operations already: the counter starts above their numbers.
    seq = max(
        op.get_bind().execute(sa.text(f"SELECT COALESCE(MAX(seq), 0) FROM {table}")).scalar_one()
        for table in ("ollama_deck_operation", "ollama_deck_operation_log")
    )
    ops.insert_missing(counter, [{"name": "seq", "value": seq}])


def downgrade() -> None:
    for table in (
        "ollama_deck_counter",
        "ollama_deck_setting",
        "ollama_deck_installed_model",
        "ollama_deck_operation_log",
        "ollama_deck_operation",
    ):
        op.drop_table(table)
