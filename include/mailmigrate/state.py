"""Sync state between passes: per folder, the source's sync token, the destination's append mark,
both folders' markers, and for every copied message its destination reference, identity and the
flags it had then.

The state makes deltas fast and lets a delta apply only the flag changes made on the source,
so changes made on the destination are never reverted. It is an optimisation and a memory, not
the source of truth: when it is lost, the next pass compares both sides by identity and adds
nothing twice.

One SQLite file per pair of mailboxes, written in a transaction after every appended batch, so a
pass killed at any point leaves state that describes exactly what is on the destination (or less:
messages appended after the last commit are found again through the append mark).

Invariant: the state is only ever trusted for the two mailboxes and the two folders it was written
for. The file is named after both mailboxes (server kind, host, port and user of each side: the
mailbox reached, whoever logs in to it), carries their identities inside, and a file that names
another plan or pair (copied from elsewhere, or renamed) is emptied on open. Per folder it keeps
both servers' folder markers (:meth:`~mailmigrate.mailbox.base.Mailbox.folder_marker`); the
folder pass discards a folder's state when either marker disagrees with the server.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailmigrate.mailbox.base import Ref

if TYPE_CHECKING:
    from mailmigrate.connections import Endpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS owner (id INTEGER PRIMARY KEY CHECK (id = 1), identity TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    source TEXT PRIMARY KEY, destination TEXT NOT NULL, token TEXT, mark TEXT,
    source_marker TEXT, destination_marker TEXT
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


def mailbox_identity(endpoint: Endpoint, user: str) -> dict[str, object]:
    """One side's mailbox as the state knows it: server kind, host, port and the mailbox's user.
    The login (own password, IMAP master user, authzid, impersonation) is not part of it: it
    reaches the same mailbox."""
    return {"kind": endpoint.kind, "host": endpoint.host.strip().lower(), "port": endpoint.port,
            "user": user.strip()}  # fmt: skip


@dataclass
class FolderState:
    destination: tuple[str, ...]
    token: str | None
    mark: str | None
    markers: tuple[str | None, str | None] = (None, None)  # source's, destination's


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
    """The sync state of one account of one plan: one source mailbox, one destination mailbox.

    :param directory: where state files live (shared between workers in production).
    :param plan: the plan name.
    :param source: :func:`mailbox_identity` of the source mailbox.
    :param destination: :func:`mailbox_identity` of the destination mailbox.

    :attr:`distrusted` says why an existing file's content was dropped on open (``None`` if not).
    """

    def __init__(self, directory: Path, plan: str, source: dict, destination: dict):
        owner = {"plan": plan, "source": source, "destination": destination}
        pair = json.dumps([source, destination], sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(pair.encode()).hexdigest()[:16]
        safe = re.sub(r"[^\w.@-]", "_", str(source.get("user", "")))
        self.path = Path(directory) / plan / f"{safe}.{digest}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()  # folder lanes share this file
        self.distrusted = self._claim(json.dumps(owner, sort_keys=True, ensure_ascii=False))

    def _claim(self, identity: str) -> str | None:
        """Make sure the file describes this plan's pair of mailboxes; empty it when it names
        another (or none, with content). Returns why it was emptied."""
        with self._db:
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            stored = None
            if "owner" in tables:
                row = self._db.execute("SELECT identity FROM owner").fetchone()
                stored = row[0] if row else None
            if stored == identity:
                return None
            why = None
            if stored is not None or tables & {"folders", "messages"}:
                why = (f"the sync state file {self.path} was written for "
                       f"{_describe(stored)}, not for {_describe(identity)}")  # fmt: skip
            for table in ("owner", "folders", "messages"):
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(
                "INSERT OR REPLACE INTO owner (id, identity) VALUES (1, ?)", (identity,)
            )
        return why

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AccountState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def folder(self, source: tuple[str, ...]) -> FolderState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT destination, token, mark, source_marker, destination_marker FROM folders "
                "WHERE source = ?", (_key(source),),
            ).fetchone()  # fmt: skip
        if row is None:
            return None
        return FolderState(destination=tuple(json.loads(row[0])), token=row[1], mark=row[2],
                           markers=(row[3], row[4]))  # fmt: skip

    def entries(
        self, source: tuple[str, ...], refs: Collection[Ref] | None = None
    ) -> dict[Ref, Entry]:
        """The folder's copied messages; with ``refs``, only those of them (read in chunks)."""
        query = "SELECT ref, dest_ref, identity, flags FROM messages WHERE source = ?"
        with self._lock:
            if refs is None:
                rows = self._db.execute(query, (_key(source),)).fetchall()
            else:
                wanted, rows = [str(ref) for ref in refs], []
                for at in range(0, len(wanted), 500):
                    chunk = wanted[at : at + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += self._db.execute(
                        f"{query} AND ref IN ({marks})", (_key(source), *chunk)
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

    def begin_folder(
        self,
        source: tuple[str, ...],
        destination: tuple[str, ...],
        markers: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """Note the folder pair and both folders' markers, keeping its token and mark (they
        change only in :meth:`finish`). The caller has checked the markers first: entries
        recorded from here on belong to these two folders."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO folders (source, destination, source_marker, destination_marker) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
                "destination = excluded.destination, source_marker = excluded.source_marker, "
                "destination_marker = excluded.destination_marker",
                (_key(source), _key(destination), *markers),
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


def _describe(identity: str | None) -> str:
    """An owner identity for a log line: plan and both mailboxes (no secrets: none are stored)."""
    if identity is None:
        return "no recorded mailboxes"
    try:
        owner = json.loads(identity)
        sides = [f"{s['user']} on {s['kind']}://{s['host']}:{s['port'] or 'default'}"
                 for s in (owner["source"], owner["destination"])]  # fmt: skip
        return f"plan {owner['plan']}: {sides[0]} -> {sides[1]}"
    except (ValueError, KeyError, TypeError):
        return "an unknown owner"
