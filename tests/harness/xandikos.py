"""A real Xandikos server for tests (from PyPI, pinned in requirements-test.txt): its multi-user
mode over HTTPS (a self-signed certificate it makes itself, not verified by the test client)
with an htpasswd file of ``{SHA}`` entries, re-read when it changes. ``--defaults`` gives each new
user a calendar and an address book, as hosted platforms do.
"""

from __future__ import annotations

import base64
import hashlib

from harness.dav_server import DavServer
from mailmigrate.groupware.dav import DavEndpoint


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
