"""Databases as host apps leave them: the deck's tables made by a host's ``create_all()``
before the deck stamped its version there, with or without rows."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import Column
from sqlalchemy import insert
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import text

from ollama_deck.db import Base
from ollama_deck.db import Operation
from ollama_deck.db import OperationLog
from ollama_deck.db import table_of
from ollama_deck.db import VERSION_TABLE

DOWN = "http://127.0.0.1:9"


def made_by_create_all(
    engine, *, version_table: bool = True, leave_out: tuple[str, str] | None = None
) -> None:
    """The deck's tables as a host's ``db.create_all()`` made them before the deck stamped
    its version there (0.3.0.dev and earlier): the version table empty (or absent), the
    counter without its row. ``leave_out``: (table, column) made without that column."""
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    if version_table:
        Table(VERSION_TABLE, metadata, Column("version_num", String(32), primary_key=True))
    metadata.create_all(engine)
    if leave_out:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {leave_out[0]} DROP COLUMN {leave_out[1]}"))


def add_operation(engine, seq: int) -> None:
    now = time.time()
    row = dict(
        id=str(uuid.uuid4()), kind="pull", model="llama3.2:1b", model_key="llama3.2:1b",
        host=DOWN, status="succeeded", percent=100.0, completed_bytes=1, total_bytes=1,
        cancel_requested=False, attempts=1, created_at=now, updated_at=now, seq=seq,
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(table_of(Operation)).values(row))
        log = dict(seq=seq + 1, operation_id=row["id"], created_at=now, text="pulled")
        conn.execute(insert(table_of(OperationLog)).values(log))
