"""Mailbox adapters, one per protocol, behind :class:`mailmigrate.mailbox.base.Mailbox`."""

from __future__ import annotations

from mailmigrate.connections import Endpoint
from mailmigrate.mailbox.base import Mailbox


def open_mailbox(endpoint: Endpoint, user: str, password: str | None, label: str) -> Mailbox:
    """An unconnected adapter for the endpoint's protocol (``with`` it to log in).

    Each adapter is imported with its first mailbox: exchangelib takes 447 ms, imapclient 44 ms
    (measured), and most migrations use one of the two protocols only."""
    if endpoint.kind == "imap":
        from mailmigrate.mailbox.imap import ImapMailbox

        return ImapMailbox(endpoint, user, password, label)
    if endpoint.kind == "ews":
        from mailmigrate.mailbox.ews import open_ews

        return open_ews(endpoint, user, password, label)
    raise ValueError(f"connection {endpoint.conn_id!r}: unsupported conn_type {endpoint.kind!r}")
