"""Groupware sync state between passes, in the style of :mod:`mailmigrate.state` but in a file and
tables of its own: per source collection, the destination collection and the source's RFC 6578
sync token; per copied item, its UID, both hrefs and both ETags as they were after the copy.

The state makes deltas cheap (only changed items are fetched) and tells a change made on the
destination since the copy (its ETag moved) from one made on the source, so a delta never
reverts a destination change. It is a memory, not the truth: when it is lost, the next pass
matches items by UID on both sides and adds nothing twice.

Invariant: one SQLite file per pair of accounts, named after both (server, user), carrying
their identities inside; a file written for another plan or pair is emptied on open.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS owner (id INTEGER PRIMARY KEY CHECK (id = 1), identity TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dav_collections (
    source TEXT PRIMARY KEY, destination TEXT NOT NULL, token TEXT
);
CREATE TABLE IF NOT EXISTS dav_items (
    source TEXT PRIMARY KEY, collection TEXT NOT NULL, uid TEXT NOT NULL, source_etag TEXT,
    destination TEXT NOT NULL, destination_etag TEXT
);
"""


@dataclass
class ItemState:
    """A copied item: its UID, hrefs and ETags on both sides right after the copy."""

    collection: str
    uid: str
    source_etag: str | None
    destination: str
    destination_etag: str | None


class GroupwareState:
    """The groupware sync state of one account pair of one plan.

    :param source: :meth:`~mailmigrate.groupware.dav.DavEndpoint.identity` of the source.
    :param destination: the same of the destination.
    """

    def __init__(self, directory: Path, plan: str, source: dict, destination: dict) -> None:
        owner = json.dumps({"plan": plan, "source": source, "destination": destination},
                           sort_keys=True)  # fmt: skip
        digest = hashlib.sha256(owner.encode()).hexdigest()[:16]
        safe = re.sub(r"[^\w.@-]", "_", str(source.get("user", "")))
        self.path = Path(directory) / plan / f"{safe}.groupware.{digest}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT identity FROM owner").fetchone()
        if row is not None and row[0] != owner:
            self.db.executescript("DELETE FROM dav_collections; DELETE FROM dav_items;")
        self.db.execute("INSERT OR REPLACE INTO owner (id, identity) VALUES (1, ?)", (owner,))
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def collection(self, source: str) -> tuple[str, str | None] | None:
        """(destination href, sync token) of a source collection, if copied before."""
        row = self.db.execute("SELECT destination, token FROM dav_collections WHERE source = ?",
                              (source,)).fetchone()  # fmt: skip
        return (row[0], row[1]) if row else None

    def set_collection(self, source: str, destination: str, token: str | None) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO dav_collections VALUES (?, ?, ?)",
                            (source, destination, token))  # fmt: skip

    def items(self, collection: str) -> dict[str, ItemState]:
        """source href → state of every item copied from ``collection``."""
        rows = self.db.execute("SELECT source, collection, uid, source_etag, destination, "
                               "destination_etag FROM dav_items WHERE collection = ?",
                               (collection,))  # fmt: skip
        return {row[0]: ItemState(*row[1:]) for row in rows}

    def set_item(self, source: str, item: ItemState) -> None:
        """Record an item right after it was written (one transaction each: a pass killed
        between two items leaves state describing the destination exactly)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO dav_items VALUES (?, ?, ?, ?, ?, ?)",
                            (source, item.collection, item.uid, item.source_etag,
                             item.destination, item.destination_etag))  # fmt: skip

    def forget_item(self, source: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM dav_items WHERE source = ?", (source,))
