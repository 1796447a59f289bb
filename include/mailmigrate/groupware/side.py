"""What :mod:`mailmigrate.groupware.sync` needs of a groupware side, DAV or Exchange.

:class:`~mailmigrate.groupware.dav.DavEndpoint`/:class:`~mailmigrate.groupware.dav.DavAccount`
and :class:`~mailmigrate.groupware.ews.EwsGroupwareEndpoint`/
:class:`~mailmigrate.groupware.ews.EwsGroupwareAccount` satisfy these protocols; the sync knows
nothing else of either. Errors are :class:`~mailmigrate.errors.GroupwareError`.
"""

from __future__ import annotations

from typing import Protocol

from mailmigrate.groupware.dav import Collection, Listing


class GroupwareAccount(Protocol):
    """A logged-in account: collections by href, items by href with an ETag (DAV's ETag or
    Exchange's change key)."""

    schedules: bool  # whether a plain write makes the server email attendees (RFC 6638)

    def discover(self) -> None: ...
    def home(self, kind: str) -> str | None: ...
    def collections(self) -> list[Collection]: ...
    def create(self, collection: Collection, href: str) -> Collection: ...
    def listing(self, collection: Collection, token: str | None = None) -> Listing: ...
    # href -> (text, ETag); the text is a ContentError for an item the side cannot render
    def fetch(self, collection: Collection, hrefs: list[str]) -> dict[str, tuple[str, str]]: ...
    def put(self, kind: str, href: str, body: str, etag: str | None) -> None: ...
    def delete(self, href: str, etag: str | None) -> None: ...
    def close(self) -> None: ...


class GroupwareEndpoint(Protocol):
    user: str

    def identity(self) -> dict[str, object]: ...
    def open(self) -> GroupwareAccount: ...
