"""A real Radicale server for tests (from PyPI, pinned in requirements-test.txt): CalDAV and
CardDAV over plain HTTP on loopback, htpasswd users (plain text, test only), each user reaching
only their own collections (``owner_only``). Radicale creates no collection for a new user.
"""

from __future__ import annotations

from pathlib import Path

from harness.dav_server import DavServer

# Radicale's rights file: what owner_only allows, and an admin login reading and writing every
# user's collections (as a provider's admin or delegated principal would).
ADMIN_RIGHTS = """\
[admin]
user: {admin}
collection: .*
permissions: RrWw

[owner]
user: .+
collection: {{user}}(/.*)?
permissions: RrWw

[root]
user: .+
collection:
permissions: R
"""


class RadicaleServer(DavServer):
    """:param max_content_length: the largest request body it accepts (Radicale answers 413
    above it), to make a destination refuse one item.
    :param admin: a user (added by :meth:`add_user` like any other) allowed to read and write
    every user's collections; ``None``: each user reaches only their own (``owner_only``)."""

    name = "radicale"

    def __init__(self, root: Path | None = None, max_content_length: int = 100_000_000,
                 admin: str | None = None) -> None:  # fmt: skip
        super().__init__(root)
        self.max_content_length = max_content_length
        self.admin = admin

    def _command(self) -> list[str]:
        (self.root / "users").touch()
        config = self.root / "config"
        config.write_text(
            f"[server]\nhosts = {self.host}:{self.port}\n"
            f"max_content_length = {self.max_content_length}\n"
            f"[auth]\ntype = htpasswd\nhtpasswd_filename = {self.root / 'users'}\n"
            "htpasswd_encryption = plain\ndelay = 0\n"
            f"[storage]\nfilesystem_folder = {self.root / 'collections'}\n"
            f"[rights]\n{self._rights()}[logging]\nlevel = warning\n"
            "[web]\ntype = none\n"
        )
        return ["-m", "radicale", "--config", str(config)]

    def _rights(self) -> str:
        if self.admin is None:
            return "type = owner_only\n"
        rights = self.root / "rights"
        rights.write_text(ADMIN_RIGHTS.format(admin=self.admin))
        return f"type = from_file\nfile = {rights}\n"

    def _write_user(self, user: str, password: str) -> None:
        with open(self.root / "users", "a") as users:
            users.write(f"{user}:{password}\n")
