"""A real Xandikos server for tests (from PyPI, pinned in requirements-test.txt): its multi-user
mode over HTTPS (a self-signed certificate it makes itself, not verified by the test client)
with an htpasswd file of ``{SHA}`` entries, re-read when it changes. ``--defaults`` gives each new
user a calendar and an address book, as hosted platforms do.
"""

from __future__ import annotations

import base64
import hashlib

from harness.dav_server import DavServer
from mailmigrate.groupware.dav import DavAccount, DavEndpoint


class XandikosServer(DavServer):
    name = "xandikos"
    scheme = "https"

    def _command(self) -> list[str]:
        (self.root / "htpasswd").touch()
        return ["-m", "xandikos", "multi-user", "-d", str(self.root / "data"),
                "-l", self.host, "-p", str(self.port), "--defaults", "--autocert",
                "--htpasswd", str(self.root / "htpasswd"), "--no-detect-systemd",
                "--state-dir", str(self.root / "state")]  # fmt: skip

    def endpoint(self, user: str) -> DavEndpoint:
        """Its certificate is a self-signed leaf for ``localhost`` (no CA bit), which no TLS
        library accepts as a trust anchor: the test client does not verify it."""
        return DavEndpoint(url=self.url, user=user, password=self.users[user], verify=False)

    def _write_user(self, user: str, password: str) -> None:
        digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        with open(self.root / "htpasswd", "a") as htpasswd:
            htpasswd.write(f"{user}:{{SHA}}{digest}\n")


class XandikosMailingServer(XandikosServer):
    """Xandikos as a scheduling server that mails invitations: its single-user mode (the only one
    with outbound iMIP) over plain HTTP, without authentication, for the one user ``owner``
    whose calendar user address is ``mailto:owner@example.org``, sending iMIP through
    ``smtp_port`` on loopback (a :class:`~harness.mail_catcher.MailCatcher`)."""

    name = "xandikos-imip"
    scheme = "http"
    address = "mailto:owner@example.org"

    def __init__(self, smtp_port: int) -> None:
        super().__init__()
        self.smtp_port = smtp_port

    def _command(self) -> list[str]:
        return ["-m", "xandikos", "serve", "-d", str(self.root / "data"), "--defaults",
                "-l", self.host, "-p", str(self.port), "--current-user-principal", "/owner/",
                "--no-detect-systemd", "--imip-send", "smtp", "--smtp-host", self.host,
                "--smtp-port", str(self.smtp_port), "--smtp-from", "calendar@server.example"]  # fmt: skip

    def _write_user(self, user: str, password: str) -> None:
        """The one user: its calendar user address set by PROPPATCH (RFC 6638 §2.4.1)."""
        account = DavAccount(DavEndpoint(url=self.url, user=user, password=password))
        try:
            body = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" '
                    'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
                    f"<C:calendar-user-address-set><D:href>{self.address}</D:href>"
                    "</C:calendar-user-address-set></D:prop></D:set></D:propertyupdate>")  # fmt: skip
            account._request("PROPPATCH", "/owner/", body, {"Content-Type": "application/xml"})
        finally:
            account.close()

    def endpoint(self, user: str) -> DavEndpoint:
        return DavEndpoint(url=self.url, user=user, password=self.users[user])
