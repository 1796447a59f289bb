"""The test harness itself: real Dovecot servers of both shapes and the corpus helpers."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
import ssl
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import imapclient
import pytest

from harness import certs
from harness.corpus import folder_snapshot, make_message, seed_folder, snapshot
from harness.dovecot import SPECIAL_USE_FOLDERS, DovecotServer
from mailmigrate.connections import endpoint_from_env

LAYOUTS = ["legacy_imap", "modern_imap"]
KiB = 1024


@pytest.fixture(params=LAYOUTS)
def server(request: pytest.FixtureRequest) -> DovecotServer:
    return request.getfixturevalue(request.param)


def _sample_messages() -> list[tuple[bytes, tuple[str, ...], datetime]]:
    plus_two = timezone(timedelta(hours=2))
    minus_five = timezone(timedelta(hours=-5, minutes=-30))
    twice = make_message(7, size=3000)
    return [
        (make_message(1, size=1200), (), datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (
            make_message(2, size=6000),
            ("\\Seen", "\\Flagged"),
            datetime(2023, 2, 3, 4, 5, 6, tzinfo=plus_two),
        ),
        (
            make_message(3, message_id=False),
            ("\\Answered", "$Forwarded", "Work"),
            datetime(2022, 12, 31, 23, 59, 59, tzinfo=minus_five),
        ),
        (
            make_message(4, eight_bit_headers=True, long_header=True),
            ("\\Draft",),
            datetime(2021, 6, 1, tzinfo=UTC),
        ),
        (
            make_message(5, size=40_000),
            ("\\Deleted", "\\Seen"),
            datetime(2020, 2, 29, 12, tzinfo=UTC),
        ),
        (twice, ("\\Seen",), datetime(2023, 3, 1, tzinfo=UTC)),
        (twice, ("\\Seen",), datetime(2023, 3, 1, tzinfo=UTC)),
    ]


def _expected_snapshot(messages) -> Counter:
    return Counter(
        (hashlib.sha256(raw).hexdigest(), frozenset(flags), when.astimezone(UTC))
        for raw, flags, when in messages
    )


def test_users_log_in_with_their_own_passwords(server: DovecotServer, new_account) -> None:
    user, password = new_account(server)
    client = server.client(user, password)
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.logout()
    with pytest.raises(imapclient.exceptions.LoginError):
        server.client(user, password + "x")


def test_legacy_namespace_is_inbox_dot_with_no_special_use(legacy_imap, new_account) -> None:
    client = legacy_imap.client(*new_account(legacy_imap))
    assert client.namespace().personal == (("INBOX.", "."),)
    assert [name for _, _, name in client.list_folders()] == ["INBOX"]
    client.create_folder("INBOX.Sent")
    client.create_folder("INBOX.Projects.2024")
    listed = {name: (flags, delimiter) for flags, delimiter, name in client.list_folders()}
    assert set(listed) == {"INBOX", "INBOX.Sent", "INBOX.Projects", "INBOX.Projects.2024"}
    assert {delimiter for _, delimiter in listed.values()} == {b"."}
    special = {b"\\Sent", b"\\Trash", b"\\Drafts", b"\\Junk", b"\\Archive"}
    assert not any(set(flags) & special for flags, _ in listed.values())
    assert not client.has_capability("SPECIAL-USE")


def test_modern_namespace_is_slash_with_special_use_folders(modern_imap, new_account) -> None:
    client = modern_imap.client(*new_account(modern_imap))
    assert client.namespace().personal == (("", "/"),)
    client.create_folder("Projects/2024")
    listed = {name: (set(flags), delimiter) for flags, delimiter, name in client.list_folders()}
    assert {delimiter for _, delimiter in listed.values()} == {b"/"}
    assert {"INBOX", "Projects", "Projects/2024", *SPECIAL_USE_FOLDERS} == set(listed)
    for name, attribute in SPECIAL_USE_FOLDERS.items():
        assert attribute.encode() in listed[name][0], name
    subscribed = {name for _, _, name in client.list_sub_folders()}
    assert set(SPECIAL_USE_FOLDERS) <= subscribed
    assert client.find_special_folder(imapclient.imapclient.SENT) == "Sent"


def test_master_user_logs_in_as_any_user(server: DovecotServer, new_account) -> None:
    user, password = new_account(server)
    owner = server.client(user, password)
    owner.append("INBOX", make_message(11))
    owner.logout()
    as_master = server.client(f"{user}*{server.master_user}", server.master_password)
    assert as_master.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1
    as_master.logout()
    assert server.master_client(user).select_folder("INBOX")[b"EXISTS"] == 1
    with pytest.raises(imapclient.exceptions.LoginError):
        server.client(f"{user}*{server.master_user}", "wrong")
    with pytest.raises(imapclient.exceptions.LoginError):
        server.client(f"nobody@example.com*{server.master_user}", server.master_password)


def test_sasl_plain_with_authzid_logs_in_as_the_user(server: DovecotServer, new_account) -> None:
    user, password = new_account(server)
    owner = server.client(user, password)
    owner.append("INBOX", make_message(12))
    owner.append("INBOX", make_message(13))
    client = imapclient.IMAPClient(server.host, port=server.port, ssl=False)
    client.plain_login(server.master_user, server.master_password, authorization_identity=user)
    assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 2
    client.logout()


def _storage_limit(client: imapclient.IMAPClient) -> int | None:
    """The STORAGE limit in KiB from GETQUOTAROOT INBOX, None without one.

    imaplib directly: imapclient 4.1's get_quota_root fails on a QUOTAROOT line without roots.
    """
    typ, data = client._imap.getquotaroot("INBOX")
    assert typ == "OK", data
    quota_lines = b" ".join(line for line in data[1] if isinstance(line, bytes))
    match = re.search(rb"STORAGE (\d+) (\d+)", quota_lines)
    return int(match.group(2)) if match else None


def test_quota_limits_are_per_user_and_change_without_restart(
    server: DovecotServer, new_account
) -> None:
    pid = server.pid
    user, password = new_account(server, quota_bytes=64 * KiB)
    client = server.client(user, password)
    assert _storage_limit(client) == 64
    client.append("INBOX", make_message(20, size=30_000))
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="(?i)quota"):
        client.append("INBOX", make_message(21, size=40_000))
    client.logout()

    server.set_quota(user, 2 * KiB * KiB)
    client = server.client(user, password)
    assert _storage_limit(client) == 2048
    client.append("INBOX", make_message(21, size=40_000))
    client.logout()
    server.set_quota(user, None)
    assert _storage_limit(server.client(user, password)) is None
    other, other_password = new_account(server)
    assert _storage_limit(server.client(other, other_password)) is None
    assert server.pid == pid


def test_new_accounts_work_at_once_without_a_restart(server: DovecotServer, new_account) -> None:
    pid = server.pid
    accounts = [new_account(server) for _ in range(5)]
    assert len({user for user, _ in accounts}) == 5
    for user, password in accounts:
        assert user.endswith("@example.com")
        server.client(user, password).logout()
    assert server.pid == pid


def test_capabilities_the_engine_relies_on(server: DovecotServer, new_account) -> None:
    client = server.client(*new_account(server))
    for capability in ("MULTIAPPEND", "UIDPLUS", "CONDSTORE", "QRESYNC", "LITERAL+", "QUOTA"):
        assert client.has_capability(capability), capability
    uidvalidity = client.folder_status("INBOX", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    typ, data = client.multiappend("INBOX", [make_message(30), make_message(31)])
    assert typ == "OK"
    assert f"[APPENDUID {uidvalidity} 1:2]".encode() in data[0]
    assert f"[APPENDUID {uidvalidity} 3]".encode() in client.append("INBOX", make_message(32))
    status = client.folder_status("INBOX", ["MESSAGES", "HIGHESTMODSEQ"])
    assert status[b"MESSAGES"] == 3
    assert status[b"HIGHESTMODSEQ"] > 0


def test_seeded_folder_snapshot_round_trips_bytes_flags_and_dates(server, new_account) -> None:
    client = server.client(*new_account(server))
    folder = "INBOX.Archive-2023" if server.layout == "legacy" else "Archive 2023/Q1"
    messages = _sample_messages()
    seed_folder(client, folder, messages)
    taken = snapshot(client, folder)
    assert taken == _expected_snapshot(messages)
    assert sum(taken.values()) == 7 and max(taken.values()) == 2  # the duplicate stays twice
    # Reading must not change what it reads (no \Seen from a FETCH).
    assert snapshot(client, folder) == taken
    everything = folder_snapshot(client)
    assert everything[folder] == taken
    assert everything["INBOX"] == Counter()
    if server.layout == "modern":
        assert set(SPECIAL_USE_FOLDERS) <= set(everything)


def test_restart_keeps_mail_accounts_and_ports(private_imap, new_account) -> None:
    for layout in ("legacy", "modern"):
        server = private_imap(layout)
        user, password = new_account(server, quota_bytes=512 * KiB)
        folder = "INBOX.Kept" if layout == "legacy" else "Kept"
        seed_folder(server.client(user, password), folder, _sample_messages())
        before = folder_snapshot(server.client(user, password))
        port, old_pid = server.port, server.pid
        server.restart()
        assert server.port == port and server.pid != old_pid
        client = server.client(user, password)
        assert folder_snapshot(client) == before
        assert _storage_limit(client) == 512
        server.kill()
        server.start()
        assert folder_snapshot(server.client(user, password)) == before


def test_oversized_messages_are_refused(private_imap, new_account) -> None:
    server = private_imap("modern", max_mail_size=20_000)
    client = server.client(*new_account(server))
    client.append("INBOX", make_message(40, size=19_000))
    with pytest.raises(imapclient.exceptions.IMAPClientError):
        client.append("INBOX", make_message(41, size=21_000))
    assert client.select_folder("INBOX")[b"EXISTS"] == 1


def test_connection_is_airflow_json_with_master_login(legacy_imap) -> None:
    from airflow.sdk import Connection

    data = legacy_imap.connection("acme_old", folder_hint="x")
    conn = Connection.from_json(json.dumps(data), conn_id="acme_old")
    assert (conn.conn_type, conn.host, conn.port, conn.login) == (
        "imap",
        "127.0.0.1",
        legacy_imap.port,
        "master",
    )
    assert conn.extra_dejson == {
        "security": "none",
        "auth": "master",
        "master_separator": "*",
        "folder_hint": "x",
    }
    endpoint = endpoint_from_env("acme_old", legacy_imap.connection_env("acme_old"))
    assert (endpoint.port, endpoint.login, endpoint.password) == (
        legacy_imap.port,
        "master",
        legacy_imap.master_password,
    )


def test_make_message_is_deterministic_exact_and_well_formed() -> None:
    for seed in range(40):
        for size in (2000, 5000, 65_432):
            raw = make_message(seed, size=size)
            assert raw == make_message(seed, size=size) and len(raw) == size
            assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert parsed["Message-ID"] and parsed["Subject"].endswith(f"#{seed}")
            if size >= 4096:
                parts = [part.get_content_type() for part in parsed.iter_parts()]
                assert parts == ["text/plain", "application/octet-stream"]
    assert b"\nMessage-ID:" not in make_message(1, message_id=False)
    eight_bit = make_message(2, eight_bit_headers=True, long_header=True)
    head = eight_bit.split(b"\r\n\r\n", 1)[0]
    assert any(byte > 127 for byte in head) and b"References: <" in head
    assert max(len(line) for line in eight_bit.split(b"\r\n")) <= 998


def test_tls_gives_imaps_and_starttls(private_imap, new_account, tmp_path) -> None:
    cert, key = certs.self_signed(tmp_path)
    server = private_imap("legacy", tls_cert=cert, tls_key=key)
    user, password = new_account(server)
    context = ssl.create_default_context(cafile=str(cert))
    imaps = imapclient.IMAPClient(server.host, port=server.tls_port, ssl=True, ssl_context=context)
    imaps.login(user, password)
    assert imaps.select_folder("INBOX")[b"EXISTS"] == 0
    imaps.logout()
    plain = imapclient.IMAPClient(server.host, port=server.port, ssl=False)
    plain.starttls(context)
    plain.login(user, password)
    plain.logout()
