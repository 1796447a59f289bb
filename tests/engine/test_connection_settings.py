"""One parser of connection settings (mailmigrate.connections): the same rules for the IMAP
session, the EWS connector and the DAV endpoint (the hooks: tests/airflow/test_hooks.py)."""

from __future__ import annotations

import pytest

from mailmigrate import connections
from mailmigrate.connections import Endpoint
from mailmigrate.errors import ConnectionConfigError, MailboxError
from mailmigrate.groupware.dav import DavEndpoint
from mailmigrate.mailbox.ews_connect import resolve_options
from mailmigrate.mailbox.imap_session import open_session

SPELLINGS = {
    True: [True, "true", "TRUE", "yes", "on", "On", "1", 1],
    False: [False, "false", "no", "off", "OFF", "0", 0],
}


@pytest.mark.parametrize(("expected", "value"), [(k, v) for k, vs in SPELLINGS.items() for v in vs])
def test_every_side_reads_booleans_alike(expected: bool, value: object) -> None:
    ews = Endpoint("exchange", "ews", "mail.example.com", login="admin", password="secret-pw",
                   extra={"verify": value, "impersonation": value})  # fmt: skip
    options = resolve_options(ews, "alice@example.com", "alice-pw", "source alice@example.com")
    assert (options.verify, options.impersonation) == (expected, expected)
    dav = Endpoint("dav", "imap", "dav.example.com", extra={"verify": value})
    assert DavEndpoint.from_connection(dav, "alice", "pw").verify is expected
    assert connections.flag("c", "verify", value) is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, 1.5, None])
def test_a_bad_boolean_names_the_connection_and_the_field(value: object) -> None:
    with pytest.raises(ConnectionConfigError, match=r"^connection 'c': extra verify must be true"):
        connections.flag("c", "verify", value)


def test_numbers_are_checked_with_the_connection_and_field_named() -> None:
    assert connections.number("c", "timeout", " 30 ", float) == 30.0
    assert connections.number("c", "max_connections", 4.0, int) == 4
    for value, kind in (("soon", float), ("1.5", int), (2.5, int), (True, int), ("nan", float),
                        ([1], float), (float("inf"), int)):  # fmt: skip
        with pytest.raises(ConnectionConfigError, match="^connection 'c': extra n must be a"):
            connections.number("c", "n", value, kind)
    with pytest.raises(ConnectionConfigError, match="extra n must be at least 1, not 0"):
        connections.number("c", "n", "0", int, minimum=1)
    with pytest.raises(ConnectionConfigError, match="extra n must be more than 0, not 0.0"):
        connections.number("c", "n", 0, float, above=0)


def test_imap_session_refuses_a_malformed_timeout_before_connecting() -> None:
    """Before: ``float("soon")`` raised a bare ValueError naming neither connection nor field."""
    endpoint = Endpoint("acme_old", "imap", "127.0.0.1", port=9, password="secret-pw",
                        extra={"security": "none", "timeout": "soon"})  # fmt: skip
    with pytest.raises(MailboxError) as refused:
        open_session(endpoint, "alice", "alice-pw", "source alice")
    assert str(refused.value) == (
        "source alice: connection 'acme_old': extra timeout must be a number, not 'soon'"
    )
    assert not refused.value.retryable


def test_ews_connector_reads_on_and_off() -> None:
    """Before: the EWS connector refused ``on``/``off``, which the Airflow hooks accept."""
    ews = Endpoint("exchange", "ews", "mail.example.com", login="admin", password="secret-pw",
                   extra={"verify": "off", "autodiscover": "on"})  # fmt: skip
    options = resolve_options(ews, "alice@example.com", None, "source alice@example.com")
    assert options.verify is False and options.autodiscover is True


def test_dav_endpoint_reads_verify_false_as_text() -> None:
    """Before: ``verify: "false"`` (as a form or the CLI's JSON gives it) meant verify."""
    dav = Endpoint("dav", "imap", "dav.example.com", extra={"verify": "false"})
    assert DavEndpoint.from_connection(dav, "alice", "pw").verify is False
    bad = Endpoint("dav", "imap", "dav.example.com", extra={"security": "tls"})
    with pytest.raises(ConnectionConfigError, match="'dav': extra security must be one of ssl"):
        DavEndpoint.from_connection(bad, "alice", "pw")


def test_a_dav_connection_for_mail_is_refused_naming_the_kinds_mail_takes() -> None:
    from mailmigrate.mailbox import open_mailbox

    dav = Endpoint(conn_id="acme_dav", kind="dav", host="dav.example", port=None, login=None,
                   password=None, extra={})  # fmt: skip
    with pytest.raises(ConnectionConfigError) as refused:
        open_mailbox(dav, "alice", "pw", "source alice")
    assert str(refused.value) == (
        "connection 'acme_dav': mail needs conn type imap or ews, not dav "
        "(calendars and contacts: name it under the plan's groupware)"
    )
