"""Migration steps that also adopt what a host's ``create_all()`` made.

A host that registered the deck's tables in its metadata (``OllamaDeck(app, db=db)``) and
calls ``db.create_all()`` makes the deck's tables from the declarations of the installed
version, outside the deck's history: all of them on a new database (stamped at once, see
``db.register_tables``), or, after a deck upgrade, the tables a pending migration is about
to create. So every step that makes something is written to find it made already:

- ``create_table`` and ``create_index`` skip what is there with the right shape and stop
  the upgrade (SchemaMismatch, nothing changed) when it is there with another;
- ``add_column`` skips a column that is there (an older deck's tables being adopted);
- ``insert_missing`` adds seed rows only where their key is free.

Write every future migration with these (and make any other step check before it acts),
so that running it over tables create_all made is a no-op.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from ollama_deck.schema import ADOPTED
from ollama_deck.schema import table_differences
from ollama_deck.schema import TablesDiffer


def create_table(name: str, *elements: Any, **kw: Any) -> sa.Table:
    """``op.create_table``, or nothing when the table exists with these columns (more
    columns are fine: a later revision's); the Table either way, for seed rows."""
    bind = op.get_bind()
    if not sa.inspect(bind).has_table(name):
        table = op.create_table(name, *elements, **kw)
        assert table is not None
        return table
    table = sa.Table(name, sa.MetaData(), *elements, **kw)
    problems = table_differences(bind, table)
    if problems:
        raise _mismatch(problems)
    _adopted(name)
    return table


def create_index(name: str, table: str, columns: list[str], **kw: Any) -> None:
    """``op.create_index``, or nothing when an index of that name covers those columns
    with the same uniqueness."""
    found = {i["name"]: i for i in sa.inspect(op.get_bind()).get_indexes(table)}
    existing = found.get(name)
    if existing is None:
        op.create_index(name, table, columns, **kw)
        return
    unique = bool(kw.get("unique", False))
    if list(existing["column_names"]) != columns or bool(existing["unique"]) != unique:
        said = "a unique index" if unique else "an index"
        raise _mismatch([f"index {name} on {table} is not {said} on ({', '.join(columns)})"])
    _adopted(f"{table}.{name}")


def add_column(table: str, column: sa.Column[Any]) -> None:
    """``op.add_column``, or nothing when the table has a column of that name already."""
    names = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    if column.name in names:
        _adopted(f"{table}.{column.name}")
        return
    op.add_column(table, column)


def insert_missing(table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert each of ``rows`` whose primary key is not taken yet."""
    bind = op.get_bind()
    keys = [c.name for c in table.primary_key.columns]
    for row in rows:
        taken = sa.select(sa.literal(1)).select_from(table)
        for key in keys:
            taken = taken.where(table.c[key] == row[key])
        if bind.execute(taken.limit(1)).first() is None:
            bind.execute(sa.insert(table).values(**row))


def _adopted(what: str) -> None:
    # The upgrade compares the whole schema at its end when any step adopted something.
    config = op.get_context().config
    if config is not None:
        config.attributes.setdefault(ADOPTED, []).append(what)


def _mismatch(problems: list[str]) -> TablesDiffer:
    return TablesDiffer(problems)  # schema.upgrade says it in full, with what to run
