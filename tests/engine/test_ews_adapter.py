"""The EWS adapter (mailmigrate.mailbox.ews) against the EWS simulator (tests/ews_simulator).

What the copy engine relies on: folders with special uses, identities equal to identity_of(MIME),
imports that are not drafts and keep read state, flags and received time, size-aware batches,
SyncFolderItems deltas with an invalid-state fallback, throttling that resumes, and errors that
name the account and never carry a secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import socket
from collections.abc import Callable, Iterator

import pytest
from ews_simulator import EwsSimulator, SimulatorStore, self_signed_certificate
from exchangelib.protocol import close_connections

from mailmigrate.connections import Endpoint
from mailmigrate.errors import AuthenticationFailed, MailboxError
from mailmigrate.identity import identity_of
from mailmigrate.mailbox import open_mailbox
from mailmigrate.mailbox.base import Mailbox, Message, MessageInfo
from mailmigrate.mailbox.ews import open_ews
from mailmigrate.mailbox.ews_connect import resolve_options

ADMIN, ADMIN_PASSWORD = "admin@example.com", "admin-Secret-91"
ALICE, ALICE_PASSWORD = "alice@example.com", "alice-Secret-92"
WHEN = dt.datetime(2022, 6, 7, 8, 9, 10, tzinfo=dt.UTC)


def mime(subject: str, msgid: str | None = None, body: str = "hello", size: int = 0) -> bytes:
    head = f"From: Bob <bob@example.com>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
    if msgid:
        head += f"Message-ID: <{msgid}@example.com>\r\n"
    return (
        head + "Date: Tue, 02 Jan 2024 10:00:00 +0000\r\n\r\n" + body + "x" * size + "\r\n"
    ).encode()


def outgoing(
    content: bytes, flags: tuple[str, ...] = (), when: dt.datetime | None = WHEN
) -> Message:
    info = MessageInfo(
        ref=0,
        identity=identity_of(content),
        size=len(content),
        flags=frozenset(flags),
        internaldate=when,
    )
    return Message(info=info, content=content)


@pytest.fixture
def store() -> SimulatorStore:
    store = SimulatorStore()
    store.add_user(ADMIN, ADMIN_PASSWORD, impersonation=True)
    store.add_user("helpdesk@example.com", "helpdesk-Secret-93")
    store.add_mailbox(ALICE, ALICE_PASSWORD, quota_kb=512)
    return store


@pytest.fixture
def simulator(store: SimulatorStore) -> Iterator[EwsSimulator]:
    with EwsSimulator(store) as sim:
        yield sim
    close_connections()


@pytest.fixture
def connect(simulator: EwsSimulator) -> Iterator[Callable[..., Mailbox]]:
    opened: list[Mailbox] = []

    def connect(user: str = ALICE, password: str | None = None, *, login: str = ADMIN,
                admin_password: str = ADMIN_PASSWORD, **extra: object) -> Mailbox:  # fmt: skip
        extra.setdefault("auth", "basic")
        endpoint = Endpoint(
            "exchange", "ews", simulator.url, login=login, password=admin_password, extra=extra
        )
        mailbox = open_ews(endpoint, user, password, f"destination {user}")
        mailbox.connect()
        opened.append(mailbox)
        return mailbox

    yield connect
    for mailbox in opened:
        mailbox.close()


def test_list_folders_reports_inbox_paths_and_special_uses(connect, store: SimulatorStore) -> None:
    store.add_folder(ALICE, "Receipts", parent="inbox")
    store.add_folder(ALICE, "2024", parent=("Inbox", "Receipts"))
    store.add_folder(ALICE, "Projects")
    store.add_folder(ALICE, "Holidays", parent="calendar", folder_class="IPF.Appointment")
    folders = {f.path: f for f in connect().list_folders()}
    assert set(folders) == {
        ("INBOX",), ("INBOX", "Receipts"), ("INBOX", "Receipts", "2024"), ("Projects",),
        ("Sent Items",), ("Drafts",), ("Deleted Items",), ("Junk Email",), ("Archive",),
    }  # fmt: skip
    uses = {path: f.special_use for path, f in folders.items() if f.special_use}
    assert uses == {
        ("Sent Items",): "\\Sent", ("Drafts",): "\\Drafts", ("Deleted Items",): "\\Trash",
        ("Junk Email",): "\\Junk", ("Archive",): "\\Archive",
    }  # fmt: skip
    assert folders[("INBOX", "Receipts", "2024")].name == "Inbox/Receipts/2024"


def test_listing_identities_equal_identity_of_mime(
    connect, store: SimulatorStore, simulator
) -> None:
    contents = [
        mime("with id", "l1"),
        mime("no id"),
        mime("with id", "l1"),
        mime("big", "l2", size=40_000),
    ]
    for i, content in enumerate(contents):
        store.add_message(
            ALICE,
            "inbox",
            content,
            is_read=i == 0,
            flagged=i == 1,
            received=WHEN + dt.timedelta(hours=i),
        )
    mailbox = connect(fetch_batch_count=2)
    listing = mailbox.listing(("INBOX",))
    assert [m.identity for m in listing.messages] == [identity_of(c) for c in contents]
    assert [m.size for m in listing.messages] == [len(c) for c in contents]
    assert [m.flags for m in listing.messages] == [{"\\Seen"}, {"\\Flagged"}, set(), set()]
    assert [m.internaldate for m in listing.messages] == [
        WHEN + dt.timedelta(hours=i) for i in range(4)
    ]
    assert listing.token
    mime_requests = len(simulator.operations("GetItem"))
    assert mime_requests == 2  # native items: MIME in batches of fetch_batch_count
    assert [m.identity for m in mailbox.listing_since(("INBOX",), None)] == [
        identity_of(c) for c in contents
    ]
    assert len(simulator.operations("GetItem")) == mime_requests  # remembered by item id

    fetched = {m.info.ref: m for m in mailbox.fetch(("INBOX",), [m.ref for m in listing.messages])}
    assert [fetched[m.ref].content for m in listing.messages] == contents
    assert [fetched[m.ref].info.identity for m in listing.messages] == [
        identity_of(c) for c in contents
    ]


def test_append_imports_received_messages_with_flags_and_date(
    connect, store: SimulatorStore, simulator
) -> None:
    mailbox = connect()
    mailbox.create_folder(("INBOX", "Imported"))
    messages = [
        outgoing(mime("read", "a1"), ("\\Seen", "\\Flagged", "\\Answered", "Work")),
        outgoing(mime("unread", "a2"), ("$Forwarded", "$MDNSent")),
        outgoing(mime("draft", "a3"), ("\\Draft", "\\Seen"), when=None),
    ]
    results = mailbox.append(("INBOX", "Imported"), messages)
    assert all(r.error is None and r.ref for r in results)
    stored = store.messages(ALICE, ("Inbox", "Imported"))
    assert [s.mime for s in stored] == [m.content for m in messages]
    assert [(s.is_read, s.is_draft) for s in stored] == [
        (True, False),
        (False, False),
        (True, True),
    ]
    assert [s.received for s in stored[:2]] == [WHEN, WHEN]
    assert stored[0].categories == ["Work"] and stored[1].categories == []

    mime_requests = len(simulator.operations("GetItem"))
    listing = mailbox.listing(("INBOX", "Imported"))
    assert (
        len(simulator.operations("GetItem")) == mime_requests
    )  # identities come from the property
    assert [m.ref for m in listing.messages] == [r.ref for r in results]
    assert [m.identity for m in listing.messages] == [m.info.identity for m in messages]
    assert [m.flags for m in listing.messages] == [
        {"\\Seen", "\\Flagged", "\\Answered", "Work"}, {"$Forwarded"}, {"\\Seen", "\\Draft"},
    ]  # fmt: skip
    assert listing.messages[0].internaldate == WHEN


def test_append_batches_by_count_and_bytes(connect, simulator) -> None:
    mailbox = connect(append_batch_count=3, append_batch_bytes=20_000)
    small = [outgoing(mime(f"s{i}", f"s{i}")) for i in range(7)]
    assert all(r.ref for r in mailbox.append(("INBOX",), small))
    assert len(simulator.operations("CreateItem")) == 3  # 3 + 3 + 1
    big = [outgoing(mime(f"b{i}", f"b{i}", size=12_000)) for i in range(3)]
    assert all(r.ref for r in mailbox.append(("INBOX",), big))
    assert len(simulator.operations("CreateItem")) == 3 + 3  # each over half the byte budget


def test_append_reports_refusals_per_message(connect, store: SimulatorStore) -> None:
    store.mailbox(ALICE).max_message_size = 50_000
    mailbox = connect()
    results = mailbox.append(
        ("INBOX",),
        [
            outgoing(mime("ok", "r1")),
            outgoing(mime("huge", "r2", size=60_000)),
            outgoing(mime("ok too", "r3")),
        ],
    )
    assert results[0].ref and results[2].ref
    assert results[1].ref is None and "ErrorMessageSizeExceeded" in results[1].error
    over_quota = mailbox.append(
        ("INBOX",), [outgoing(mime(f"q{i}", f"q{i}", size=45_000)) for i in range(12)]
    )
    assert any(r.error and "ErrorQuotaExceeded" in r.error for r in over_quota)
    assert len(store.messages(ALICE, "inbox")) == 2 + sum(r.ref is not None for r in over_quota)


def test_changes_report_new_messages_flag_changes_and_removals(
    connect, store: SimulatorStore
) -> None:
    ids = [store.add_message(ALICE, "inbox", mime(f"c{i}", f"c{i}")) for i in range(4)]
    mailbox = connect()
    listing = mailbox.listing(("INBOX",))
    assert mailbox.changes(("INBOX",), listing.token, ids).empty

    store.user_set_read(ids[0], True)
    store.user_set_flag(ids[1], True)
    store.user_delete(ids[2])
    new_content = mime("arrived later", "c9")
    new_id = store.add_message(ALICE, "inbox", new_content, received=WHEN)
    changes = mailbox.changes(("INBOX",), listing.token, ids)
    assert [(m.ref, m.identity, m.internaldate) for m in changes.new] == [
        (new_id, identity_of(new_content), WHEN)
    ]
    assert changes.flags == {ids[0]: {"\\Seen"}, ids[1]: {"\\Flagged"}}
    assert changes.removed == {ids[2]}
    assert mailbox.changes(("INBOX",), changes.token, ids + [new_id]).empty


def test_invalid_or_expired_sync_state_gives_none(connect, store: SimulatorStore) -> None:
    store.add_message(ALICE, "inbox", mime("x", "x1"))
    store.add_folder(ALICE, "Other")
    mailbox = connect()
    token = mailbox.listing(("INBOX",)).token
    assert mailbox.changes(("Other",), token, []) is None  # a token of another folder
    tag, _, _ = token.partition(":")
    assert mailbox.changes(("INBOX",), f"{tag}:bm90IGEgc3RhdGU=", []) is None
    store.expire_sync_states(ALICE, "inbox")
    assert mailbox.changes(("INBOX",), token, []) is None


def test_set_flags_and_delete(connect, store: SimulatorStore) -> None:
    mailbox = connect()
    (result,) = mailbox.append(("INBOX",), [outgoing(mime("f", "f1"), ("\\Seen",))])
    mailbox.set_flags(
        ("INBOX",),
        result.ref,
        frozenset({"\\Flagged", "\\Answered", "Later"}),
        frozenset({"\\Seen"}),
    )
    (info,) = mailbox.listing(("INBOX",)).messages
    assert info.flags == {"\\Flagged", "\\Answered", "Later"}
    mailbox.set_flags(
        ("INBOX",), result.ref, frozenset({"NonJunk"}), frozenset({"\\Flagged", "Later"})
    )
    assert mailbox.listing(("INBOX",)).messages[0].flags == {"\\Answered"}
    mailbox.delete(("INBOX",), [result.ref])
    assert store.messages(ALICE, "inbox") == []


def test_create_folder_stats_quota_and_describe(connect, store: SimulatorStore) -> None:
    mailbox = connect()
    mailbox.create_folder(("Projects", "2024", "Q1"))
    mailbox.create_folder(("Projects", "2024", "Q1"))  # exists: no error
    assert ("Projects", "2024", "Q1") in {f.path for f in mailbox.list_folders()}
    contents = [mime("s1", "s1", size=1000), mime("s2", "s2", size=3000)]
    mailbox.append(("Projects", "2024", "Q1"), [outgoing(c) for c in contents])
    stats = mailbox.folder_stats(("Projects", "2024", "Q1"))
    assert (stats.messages, stats.size, stats.largest) == (
        2,
        sum(map(len, contents)),
        len(contents[1]),
    )
    quota = mailbox.quota()
    assert quota is not None and quota.limit == 512 * 1024 and quota.used == sum(map(len, contents))
    facts = mailbox.describe()
    assert (
        facts["protocol"] == "ews"
        and facts["access"] == "impersonation"
        and facts["api_version"] == "Exchange2016"
    )
    assert not mailbox.valid_name_part("") and mailbox.valid_name_part("Q1/Q2")


def test_throttled_append_completes_and_logs_the_back_off(connect, simulator, caplog) -> None:
    mailbox = connect(max_wait=30, max_connections=2)
    assert mailbox.describe()["max_connections"] == 2 and mailbox.describe()["max_wait"] == 30
    simulator.busy(2, back_off_ms=80, operations={"CreateItem"})
    with caplog.at_level(logging.WARNING, logger="mailmigrate.mailbox.ews_connect"):
        results = mailbox.append(("INBOX",), [outgoing(mime(f"t{i}", f"t{i}")) for i in range(3)])
    assert all(r.ref for r in results)
    assert [r.outcome for r in simulator.operations("CreateItem")] == [
        "ErrorServerBusy",
        "ErrorServerBusy",
        "NoError",
    ]
    assert caplog.text.count("is busy (ErrorServerBusy): backing off 0.1 s") == 2


def test_throttling_longer_than_max_wait_is_a_retryable_error(connect, simulator) -> None:
    mailbox = connect(max_wait=1)
    simulator.busy(1, back_off_ms=5_000, operations={"SyncFolderItems"})
    with pytest.raises(MailboxError) as failure:
        mailbox.listing(("INBOX",))
    assert failure.value.retryable and "destination alice@example.com" in str(failure.value)


def test_debug_logs_carry_no_credentials(connect, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="exchangelib"):
        connect().list_folders()
    assert "Request headers" in caplog.text and "[redacted]" in caplog.text
    basic = base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
    assert ADMIN_PASSWORD not in caplog.text and basic not in caplog.text


def test_refused_logins_raise_authentication_failed_without_secrets(
    connect, store: SimulatorStore
) -> None:
    with pytest.raises(AuthenticationFailed) as wrong_admin:
        connect(admin_password="wrong-Admin-Pass")
    assert "destination alice@example.com" in str(wrong_admin.value) and ADMIN in str(
        wrong_admin.value
    )
    assert "wrong-Admin-Pass" not in str(wrong_admin.value)
    with pytest.raises(AuthenticationFailed) as wrong_own:
        connect(ALICE, "wrong-Own-Pass", auth="ntlm")
    assert "wrong-Own-Pass" not in str(wrong_own.value)
    with pytest.raises(AuthenticationFailed, match="impersonat"):
        connect(login="helpdesk@example.com", admin_password="helpdesk-Secret-93")
    with pytest.raises(MailboxError, match="has no mailbox") as no_mailbox:
        connect("nobody@example.com")
    assert not no_mailbox.value.retryable


def test_own_credentials_over_ntlm_and_delegate_access(
    connect, store: SimulatorStore, simulator
) -> None:
    own = connect(ALICE, ALICE_PASSWORD, auth="ntlm")
    assert own.describe()["access"] == "delegate" and own.describe()["auth"] == "NTLM"
    store.grant_full_access("helpdesk@example.com", ALICE)
    delegated = connect(
        login="helpdesk@example.com", admin_password="helpdesk-Secret-93", impersonation=False
    )
    assert ("INBOX",) in {f.path for f in delegated.list_folders()}
    assert not [
        r for r in simulator.requests if r.principal == "helpdesk@example.com" and r.impersonated
    ]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_with_ca_file_and_oauth2_client_credentials(store: SimulatorStore, tmp_path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    store.add_oauth_client("app-7", "client-Secret-94", "tenant-7")
    with EwsSimulator(store, auth=("oauth2", "basic"), tls=(cert, key)) as sim:
        try:
            by_host = Endpoint("exchange", "ews", "127.0.0.1", port=sim.port, login=ADMIN,
                               password=ADMIN_PASSWORD, extra={"auth": "basic", "ca_file": str(cert)})  # fmt: skip
            with open_mailbox(by_host, ALICE, None, "source alice@example.com") as mailbox:
                assert mailbox.describe()["server"] == sim.url
            extra = {"auth": "oauth2", "client_id": "app-7", "tenant_id": "tenant-7",
                     "token_url": sim.token_url("tenant-7"), "ca_file": str(cert)}  # fmt: skip
            app = Endpoint("exchange", "ews", sim.url, password="client-Secret-94", extra=extra)
            with open_ews(app, ALICE, None, "source alice@example.com") as mailbox:
                assert ("INBOX",) in {f.path for f in mailbox.list_folders()}
            assert sim.requests[-1].principal == "app-7" and sim.requests[-1].impersonated == ALICE
            wrong = Endpoint("exchange", "ews", sim.url, password="wrong-Secret-95", extra=extra)
            with pytest.raises(AuthenticationFailed) as refused:
                open_ews(wrong, ALICE, None, "source alice@example.com").connect()
            assert "wrong-Secret-95" not in str(refused.value) and "alice@example.com" in str(
                refused.value
            )
            untrusted = Endpoint("exchange", "ews", sim.url, login=ADMIN, password=ADMIN_PASSWORD,
                                 extra={"auth": "basic", "service_endpoint": sim.url.replace("127.0.0.1", "localhost")})  # fmt: skip
            with pytest.raises(MailboxError) as tls_failure:
                open_ews(untrusted, ALICE, None, "source alice@example.com").connect()
            assert not tls_failure.value.retryable
        finally:
            close_connections()


def test_endpoint_options_resolve_to_service_url_auth_and_access() -> None:
    def options(host: str, password: str | None = None, port: int | None = None, **extra: object):
        endpoint = Endpoint(
            "exchange", "ews", host, port=port, login=ADMIN, password=ADMIN_PASSWORD, extra=extra
        )
        return resolve_options(endpoint, ALICE, password, "source alice@example.com")

    by_name = options("mail.example.com", port=8443)
    assert by_name.service_endpoint == "https://mail.example.com:8443/EWS/Exchange.asmx"
    assert (by_name.impersonation, by_name.uses_admin, by_name.login) == (True, True, ADMIN)
    assert by_name.auth is None and by_name.max_wait == 300  # auth detected from the server
    own = options("https://mail.example.com/EWS/Exchange.asmx", ALICE_PASSWORD, auth="NTLM")
    assert (own.impersonation, own.uses_admin, own.login, own.auth) == (False, False, ALICE, "ntlm")
    forced = options(
        "mail.example.com",
        ALICE_PASSWORD,
        impersonation=True,
        service_endpoint="https://ews.example.com/x",
    )
    assert (forced.impersonation, forced.login, forced.service_endpoint) == (
        True,
        ADMIN,
        "https://ews.example.com/x",
    )
    delegated = options("mail.example.com", impersonation="false")
    assert (delegated.impersonation, delegated.uses_admin, delegated.login) == (False, True, ADMIN)
    assert options("example.com", autodiscover=True).service_endpoint is None
    assert options("mail.example.com", ca_file="/etc/ca.pem").verify == "/etc/ca.pem"
    assert options("mail.example.com", verify=False).verify is False
    for bad in ({"auth": "kerberos"}, {"max_wait": "soon"}, {"append_batch_count": 0}, {"impersonation": "maybe"},
                {"auth": "oauth2", "client_id": "app"}):  # fmt: skip
        with pytest.raises(MailboxError) as refused:
            options("mail.example.com", **bad)
        assert ADMIN_PASSWORD not in str(refused.value)


def test_unreachable_server_is_a_retryable_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = Endpoint("exchange", "ews", f"http://127.0.0.1:{port}/EWS/Exchange.asmx", login=ADMIN,
                        password=ADMIN_PASSWORD, extra={"auth": "basic"})  # fmt: skip
    with pytest.raises(MailboxError) as failure:
        open_ews(endpoint, ALICE, None, "source alice@example.com").connect()
    assert failure.value.retryable and not isinstance(failure.value, AuthenticationFailed)
    assert "source alice@example.com" in str(failure.value) and ADMIN_PASSWORD not in str(
        failure.value
    )
