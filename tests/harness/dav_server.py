"""What the test harness's DAV servers (Radicale, Xandikos) share: a Python server started from the
venv on a free loopback port, users added while it runs, and :class:`DavEndpoint` values for them.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.dovecot import free_port
from harness.loopback_service import LoopbackService
from mailmigrate.groupware.dav import DavEndpoint

START_TIMEOUT = 30.0


class DavServerError(RuntimeError):
    """The test server could not be started; the text says why."""


class DavServer(LoopbackService):
    """Base of a DAV server for tests. Subclasses set :attr:`name`, :attr:`scheme` and implement
    :meth:`_command` and :meth:`_write_user`.

    :param root: a directory for its data, configuration and log; removed by :meth:`stop`.
    """

    name = "dav"
    scheme = "http"

    def __init__(self, root: Path | None = None) -> None:
        prefix = f"mailmigrate-{self.name}-"
        self.root = Path(root or tempfile.mkdtemp(prefix=prefix)).resolve()
        self.port = free_port(self.host)
        self.log_path = self.root / f"{self.name}.log"
        self.users: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _write_user(self, user: str, password: str) -> None:
        raise NotImplementedError

    def ca_file(self) -> str | None:
        """The CA file a client trusts for this server (``None``: plain HTTP)."""
        return None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, *self._command()]
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.root,
            )  # fmt: skip
        self._started(process)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DavServerError(f"{self.name} exited at start: {self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                if self._ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise DavServerError(f"{self.name} did not listen within 30 s: {self.log_tail()}")

    def _ready(self) -> bool:
        return True

    def add_user(self, user: str | None = None, password: str | None = None) -> DavEndpoint:
        """A new user (default: a random name) with ``password`` (default: a random one); its
        endpoint."""
        user = user or f"user{secrets.token_hex(4)}"
        password = password or secrets.token_urlsafe(12)
        self.users[user] = password
        self._write_user(user, password)
        return self.endpoint(user)

    def endpoint(self, user: str) -> DavEndpoint:
        return DavEndpoint(url=self.url, user=user, password=self.users[user],
                           ca_file=self.ca_file())  # fmt: skip
