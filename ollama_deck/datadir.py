"""Where the standalone deck keeps its database unless ``OLLAMA_DECK_DATABASE_URL`` says.

One SQLite file per user, in the platform's data directory, whatever way the package was
imported: ``flask --app app run`` from a source tree and ``ollama-deck serve`` from an
installed wheel find the same file. (Before 0.3.0 it was in Flask's instance folder, which
is the source tree's ``instance/`` for the one and ``<venv>/var/ollama_deck-instance/``
for the other: two databases that did not know of each other.)

A database at such an old default is not left behind: when the new file does not exist
yet, the old one that holds the most operations is copied there (SQLite's backup, so a
file in use copies consistently; the old file stays as it was), and an old file that holds
operations but was not copied is named at every start until it is moved away.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from .config import SettingError

log = logging.getLogger(__name__)
FILE_NAME = "ollama_deck.db"
APP_DIR = "ollama-deck"
# A row of the copy's ollama_deck_setting: which old file it was copied from.
COPIED_FROM = "copied_from"


def data_dir() -> Path:
    """The per-user data directory of the deck: ``$XDG_DATA_HOME/ollama-deck`` (else
    ``~/.local/share/ollama-deck``); ``~/Library/Application Support/ollama-deck`` on
    macOS; ``%LOCALAPPDATA%\\ollama-deck`` on Windows."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else home / ".local" / "share"  # XDG: absolute
    return base / APP_DIR


def old_default_paths(instance_path: str) -> list[Path]:
    """Where 0.2.0 and earlier kept the standalone database: the instance folder of this
    import, and that of a package installed into this environment (``serve``'s)."""
    paths = [
        Path(instance_path) / FILE_NAME,
        Path(sys.prefix) / "var" / "ollama_deck-instance" / FILE_NAME,
    ]
    return list(dict.fromkeys(p.resolve() for p in paths))


def default_database_url(old_paths: list[Path]) -> str:
    """The SQLite URL of the per-user database, made ready: its folder made, and an old
    default database copied there when it does not exist yet (see the module's docstring).
    A folder that cannot be made is a SettingError naming the setting that avoids it."""
    path = data_dir() / FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingError(
            f"cannot make the deck's data directory {path.parent} ({exc.strerror}); "
            "set OLLAMA_DECK_DATABASE_URL to a database it can use"
        ) from None
    held = {old: operations_in(old) for old in old_paths if old.is_file() and old != path}
    if not path.exists() and held:
        source = max(held, key=lambda old: (held[old], old.stat().st_mtime))
        if copy_database(source, path):
            log.warning(
                "ollama-deck: copied the database %s (%d operations), the default before "
                "0.3.0, to %s, the default now; the old file is left as it was",
                source,
                held[source],
                path,
            )
    copied = copied_from(path) if any(held.values()) else None
    for old, count in held.items():
        if count and str(old) != copied:
            log.warning(
                "ollama-deck: %s, a default database before 0.3.0, holds %d operations "
                "and is not used: the default is now %s. To use it instead, stop the deck "
                "and copy it over that file, or set OLLAMA_DECK_DATABASE_URL=sqlite:///%s",
                old,
                count,
                path,
                old,
            )
    return f"sqlite:///{path}"


def _open(path: Path) -> sqlite3.Connection:
    # Read and write, never create: read-only would fail on a WAL file whose -shm is gone.
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)


def operations_in(path: Path) -> int:
    """How many operations a deck database file holds (0 if it cannot be read as one)."""
    try:
        con = _open(path)
        try:
            return int(con.execute("SELECT count(*) FROM ollama_deck_operation").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def copy_database(source: Path, target: Path) -> bool:
    """Copy a SQLite database to ``target`` if nothing is there; False if another process
    put one there first. Written aside and linked into place, so no process ever opens a
    half-copied file."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.copying")
    try:
        src = _open(source)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            try:
                dst.execute(
                    'INSERT OR REPLACE INTO ollama_deck_setting ("key", value, updated_at) '
                    "VALUES (?, ?, ?)",
                    (COPIED_FROM, str(source), time.time()),
                )
                dst.commit()
            except sqlite3.Error:
                pass  # not a deck database after all: copied as it is
        finally:
            dst.close()
            src.close()
        os.link(partial, target)  # fails if another process was first
        return True
    except FileExistsError:
        return False
    finally:
        partial.unlink(missing_ok=True)


def copied_from(path: Path) -> str | None:
    """The old file the database at ``path`` was copied from, if it was."""
    try:
        con = _open(path)
        try:
            row = con.execute(
                'SELECT value FROM ollama_deck_setting WHERE "key" = ?', (COPIED_FROM,)
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None
