"""Sync state between passes: per folder, the source's sync token, the destination's append mark,
and for every copied message its destination reference, identity and the flags it had then.

The state makes deltas fast and lets a delta apply only the flag changes made on the source,
so changes made on the destination are never reverted. It is an optimisation and a memory, not
the source of truth: when it is lost, the next pass compares both sides by identity and adds
nothing twice.

One SQLite file per account, written in a transaction after every appended batch, so a pass
killed at any point leaves state that describes exactly what is on the destination (or less:
messages appended after the last commit are found again through the append mark).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mailmigrate.mailbox.base import Ref

SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    source TEXT PRIMARY KEY, destination TEXT NOT NULL, token TEXT, mark TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    source TEXT NOT NULL, ref TEXT NOT NULL, dest_ref TEXT, identity TEXT NOT NULL,
    flags TEXT NOT NULL, PRIMARY KEY (source, ref)
);
"""


def default_state_dir() -> Path:
    """``$MAILMIGRATE_STATE_DIR``, else ``~/.local/state/mailmigrate``."""
    configured = os.environ.get("MAILMIGRATE_STATE_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".local" / "state" / "mailmigrate"


@dataclass
class FolderState:
    destination: tuple[str, ...]
    token: str | None
    mark: str | None


@dataclass
class Entry:
    """A copied message: where it went, what it is, and its source flags when last synced."""

    dest_ref: Ref | None
    identity: str
    flags: frozenset[str]


@functools.lru_cache(maxsize=4096)
def _flags_text(flags: frozenset[str]) -> str:
    """The stored form of a flag set (a mailbox has few distinct ones; this runs per message)."""
    return json.dumps(sorted(flags))


def _key(path: tuple[str, ...]) -> str:
    return json.dumps(list(path), ensure_ascii=False)


def _ref(text: str | None) -> Ref | None:
    if text is None:
        return None
    return int(text) if text.isdigit() else text


class AccountState:
    """The sync state of one account of one plan.

    :param directory: where state files live (shared between workers in production).
    :param plan: the plan name; :param account: the source user.
    """

    def __init__(self, directory: Path, plan: str, account: str):
        safe = re.sub(r"[^\w.@-]", "_", account)
        self.path = Path(directory) / plan / f"{safe}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()  # folder lanes share this file

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AccountState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def folder(self, source: tuple[str, ...]) -> FolderState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT destination, token, mark FROM folders WHERE source = ?", (_key(source),)
            ).fetchone()
        if row is None:
            return None
        return FolderState(destination=tuple(json.loads(row[0])), token=row[1], mark=row[2])

    def entries(self, source: tuple[str, ...]) -> dict[Ref, Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ref, dest_ref, identity, flags FROM messages WHERE source = ?",
                (_key(source),),
            ).fetchall()
        return {
            _ref(ref): Entry(_ref(dest), identity, frozenset(json.loads(flags)))
            for ref, dest, identity, flags in rows
        }

    def destinations(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        """Every folder pair of earlier passes: source path -> destination path."""
        with self._lock:
            rows = self._db.execute("SELECT source, destination FROM folders").fetchall()
        return {tuple(json.loads(a)): tuple(json.loads(b)) for a, b in rows}

    def count(self, source: tuple[str, ...]) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE source = ?", (_key(source),)
            ).fetchone()
        return int(row[0])

    def begin_folder(self, source: tuple[str, ...], destination: tuple[str, ...]) -> None:
        """Note the folder pair, keeping its token and mark (they change only in :meth:`finish`)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO folders (source, destination) VALUES (?, ?) "
                "ON CONFLICT(source) DO UPDATE SET destination = excluded.destination",
                (_key(source), _key(destination)),
            )

    def reset_folder(self, source: tuple[str, ...]) -> None:
        """Forget every message of a folder (before a full compare rebuilds them)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM messages WHERE source = ?", (_key(source),))
            self._db.execute(
                "UPDATE folders SET token = NULL, mark = NULL WHERE source = ?", (_key(source),)
            )

    def record(self, source: tuple[str, ...], entries: Iterable[tuple[Ref, Entry]]) -> None:
        """Store copied (or matched) messages in one transaction."""
        key = _key(source)
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO messages (source, ref, dest_ref, identity, flags) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        str(ref),
                        None if e.dest_ref is None else str(e.dest_ref),
                        e.identity,
                        _flags_text(frozenset(e.flags)),
                    )
                    for ref, e in entries
                ],
            )

    def forget(self, source: tuple[str, ...], refs: Iterable[Ref]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "DELETE FROM messages WHERE source = ? AND ref = ?",
                [(_key(source), str(ref)) for ref in refs],
            )

    def finish(self, source: tuple[str, ...], token: str | None, mark: str | None) -> None:
        """The pass over this folder is complete up to ``token``; later appends start at ``mark``."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE folders SET token = ?, mark = ? WHERE source = ?",
                (token, mark, _key(source)),
            )
