"""TLS against a real Dovecot with a certificate from a test CA made here (``cryptography``).

IMAPS and STARTTLS are refused without the CA and accepted with it (``ca_file``); a certificate
for another host is refused; a path that hides STARTTLS or breaks the command is refused, never
used in clear text; and without a ``security`` extra the engine speaks TLS: plain text only when
the connection says ``security: none``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from harness import certs
from harness.corpus import make_message, seed_folder, snapshot
from harness.figures import record
from harness.proxy import CuttingProxy

from mailmigrate.connections import Endpoint, endpoint_from_dict
from mailmigrate.errors import AuthenticationFailed, MailboxError
from mailmigrate.mailbox.imap import ImapMailbox
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

PASSWORD = "Tls-Secret-Pw-5521"
USER = "tls@example.com"


def make_test_pki(directory: Path) -> dict[str, Path]:
    """A CA and two server certificates it signed: one for 127.0.0.1 and localhost, one for
    mail.example.com only. Returns the PEM files by name."""
    ca_key = certs.new_key()
    ca = certs.certificate(certs.name("mailmigrate test CA"), certs.name("mailmigrate test CA"),
                           ca_key.public_key(), ca_key, ca=True, key_usage=True)  # fmt: skip
    files = {"ca": certs.write_certificate(directory / "ca.pem", ca)}
    hosts = {
        "loopback": [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        "elsewhere": [x509.DNSName("mail.example.com")],
    }
    for label, names in hosts.items():
        key = certs.new_key()
        cert = certs.certificate(certs.name(label), ca.subject, key.public_key(), ca_key,
                                 ca=False, names=names)  # fmt: skip
        files[f"{label}_cert"] = certs.write_certificate(directory / f"{label}.pem", cert)
        files[f"{label}_key"] = certs.write_key(directory / f"{label}.key", key)
    return files


@pytest.fixture(scope="module")
def pki():
    directory = Path(tempfile.mkdtemp(prefix="mailmigrate-pki-"))
    yield make_test_pki(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_imap(dovecot_factory, pki):
    """Dovecot with the loopback certificate: IMAPS on ``tls_port``, STARTTLS on ``port``."""
    server = dovecot_factory("modern", tls_cert=pki["loopback_cert"], tls_key=pki["loopback_key"])
    server.add_account(USER, PASSWORD)
    return server


def _endpoint(server, port: int, **extra: object) -> Endpoint:
    return Endpoint("tls", "imap", server.host, port=port, extra=extra)


def _login(endpoint: Endpoint) -> ImapMailbox:
    mailbox = ImapMailbox(endpoint, USER, PASSWORD, f"destination {USER}")
    mailbox.connect()
    return mailbox


def _refused(endpoint: Endpoint, *expected: str) -> str:
    with pytest.raises(MailboxError) as caught:
        _login(endpoint)
    text = str(caught.value)
    assert not isinstance(caught.value, AuthenticationFailed)
    assert not caught.value.retryable, text  # retrying cannot make a certificate valid
    assert any(word in text for word in expected), text
    assert PASSWORD not in text
    return text


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_refused_without_the_ca_accepted_with_it(tls_imap, pki, security):
    port = tls_imap.tls_port if security == "ssl" else tls_imap.port
    _refused(_endpoint(tls_imap, port, security=security), "CERTIFICATE_VERIFY_FAILED")
    mailbox = _login(_endpoint(tls_imap, port, security=security, ca_file=str(pki["ca"])))
    try:
        assert mailbox.describe()["protocol"] == "imap"
        assert mailbox.client._imap.sock.version().startswith("TLS")
    finally:
        mailbox.close()
    record("tls", refused_without_ca=1, accepted_with_ca=1)


def test_a_certificate_for_another_host_is_refused(private_imap, pki):
    server = private_imap("modern", tls_cert=pki["elsewhere_cert"], tls_key=pki["elsewhere_key"])
    server.add_account(USER, PASSWORD)
    for security, port in (("ssl", server.tls_port), ("starttls", server.port)):
        endpoint = _endpoint(server, port, security=security, ca_file=str(pki["ca"]))
        _refused(endpoint, "CERTIFICATE_VERIFY_FAILED", "match")
    record("tls", wrong_host_refused=2)


@pytest.mark.parametrize(
    "tamper",
    [
        {"strip_capabilities": (b"STARTTLS",)},  # the path hides the offer
        {"rename_commands": {b"STARTTLS": b"STARTTLX"}},  # the command never works
    ],
    ids=["starttls-hidden", "starttls-broken"],
)
def test_a_path_that_drops_starttls_is_refused_never_downgraded(tls_imap, pki, tamper):
    proxy = CuttingProxy(tls_imap.host, tls_imap.port, record=True, **tamper)
    try:
        endpoint = _endpoint(tls_imap, proxy.port, security="starttls", ca_file=str(pki["ca"]))
        _refused(endpoint, "STARTTLS")
        sent = bytes(proxy.to_server)
    finally:
        proxy.close()
    assert b"LOGIN" not in sent.upper() and b"AUTHENTICATE" not in sent.upper()
    assert PASSWORD.encode() not in sent
    record("tls", downgrades_refused=1)


def test_starttls_sends_nothing_secret_in_clear_text(tls_imap, pki):
    proxy = CuttingProxy(tls_imap.host, tls_imap.port, record=True)
    try:
        endpoint = _endpoint(tls_imap, proxy.port, security="starttls", ca_file=str(pki["ca"]))
        _login(endpoint).close()
        sent = bytes(proxy.to_server)
    finally:
        proxy.close()
    assert b"STARTTLS" in sent  # the upgrade happened on this connection...
    assert PASSWORD.encode() not in sent and USER.encode() not in sent  # ...before the login


def test_tls_is_the_default_and_plain_text_must_be_explicit(tls_imap, pki):
    # No security extra: TLS. Against the plain port that fails, it never falls back.
    proxy = CuttingProxy(tls_imap.host, tls_imap.port, record=True)
    try:
        _refused(_endpoint(tls_imap, proxy.port, ca_file=str(pki["ca"])), "TLS", "SSL")
        assert PASSWORD.encode() not in bytes(proxy.to_server)
    finally:
        proxy.close()
    _login(_endpoint(tls_imap, tls_imap.tls_port, ca_file=str(pki["ca"]))).close()
    _login(_endpoint(tls_imap, tls_imap.port, security="none")).close()
    text = _refused(_endpoint(tls_imap, tls_imap.port, security="plain"), "security")
    assert "ssl, starttls, none" in text
    # The Airflow connection form leaves an unset security out: the same default.
    from airflow.models.connection import Connection

    from mailmigrate_airflow.hooks import endpoint_from_connection

    connection = Connection(conn_id="tls_default", conn_type="imap", host=tls_imap.host,
                            port=tls_imap.port, extra='{"security": null, "ca_file": ""}')  # fmt: skip
    endpoint = endpoint_from_connection(connection)
    assert endpoint.option("security") is None
    _refused(endpoint, "TLS", "SSL")
    record("tls", plain_text_refused_by_default=2)


def test_a_copy_over_imaps_and_starttls(tls_imap, modern_imap, new_account, pki, tmp_path):
    from harness.engine_helpers import make_plan

    user, password = new_account(modern_imap)
    src = modern_imap.client(user, password)
    when = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    seed_folder(src, "INBOX", [(make_message(60_000 + i), ("\\Seen",), when) for i in range(12)])
    dst_user = f"copy-{user}"
    tls_imap.add_account(dst_user, PASSWORD)
    ca = str(pki["ca"])
    source = replace(
        endpoint_from_dict("src", modern_imap.connection("src")), port=modern_imap.port
    )
    for security, port in (("ssl", tls_imap.tls_port), ("starttls", tls_imap.port)):
        destination = Endpoint("tls", "imap", tls_imap.host, port=port,
                               extra={"security": security, "ca_file": ca})  # fmt: skip
        account = Account(user, dst_user, password, PASSWORD)
        plan = make_plan(tmp_path / security, [account])
        result = copy_account(plan, account, source, destination, "initial")
        assert result.ok, result.summary_lines()
        assert snapshot(tls_imap.client(dst_user, PASSWORD), "INBOX") == snapshot(src, "INBOX")


# -- EWS: TLS settings belong to one connection --------------------------------------------


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_ews_tls_settings_stay_with_their_connection(tmp_path):
    """Two connections to one self-signed EWS server (the simulator) in one process: the one
    with ``verify: false`` (or its own ``ca_file``) works, and the strict one is still refused
    after it, with the same URL and the same credentials."""
    from ews_simulator import EwsSimulator, SimulatorStore, self_signed_certificate
    from exchangelib.protocol import close_connections

    from mailmigrate.mailbox.ews import open_ews

    cert, key = self_signed_certificate(tmp_path)
    store = SimulatorStore()
    store.add_mailbox(USER, PASSWORD)
    with EwsSimulator(store, auth=("basic",), tls=(cert, key)) as sim:

        def endpoint(**extra: object) -> Endpoint:
            return Endpoint("exchange", "ews", sim.url, extra={"auth": "basic", **extra})

        def folders(connection: Endpoint) -> set[tuple[str, ...]]:
            with open_ews(connection, USER, PASSWORD, f"source {USER}") as mailbox:
                return {f.path for f in mailbox.list_folders()}

        def refused(connection: Endpoint) -> None:
            with pytest.raises(MailboxError) as caught:
                folders(connection)
            text = str(caught.value)
            assert "CERTIFICATE_VERIFY_FAILED" in text and not caught.value.retryable, text

        try:
            assert ("INBOX",) in folders(endpoint(verify=False))
            refused(endpoint())
            refused(endpoint(verify=True))
            assert ("INBOX",) in folders(endpoint(ca_file=str(cert)))
            refused(endpoint())
            assert ("INBOX",) in folders(endpoint(verify=False))  # still its own after those
        finally:
            close_connections()
