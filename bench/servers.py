"""The two local Dovecot servers of a benchmark run, from the test harness (legacy -> modern)."""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.dovecot import DovecotServer  # noqa: E402

from bench.tools import Login  # noqa: E402


class BenchServers:
    """A legacy-layout source and a modern-layout destination Dovecot, started and stopped
    together, in one temporary directory (outside pytest's 0700 tmp, so Dovecot can reach it)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mailmigrate-bench-"))
        self.root.chmod(0o755)
        self.source = DovecotServer(self.root / "legacy", "legacy")
        self.destination = DovecotServer(self.root / "modern", "modern")

    def __enter__(self) -> BenchServers:
        try:
            self.source.start()
            self.destination.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for server in (self.source, self.destination):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the other one
                print(f"bench: stopping {server!r}: {exc}", file=sys.stderr)
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def account(server: DovecotServer, user: str) -> Login:
        """A new account on ``server`` with a random password."""
        password = secrets.token_hex(12)
        server.add_account(user, password)
        return Login(server.host, server.port, user, password)

    @staticmethod
    def client(server: DovecotServer, login: Login):
        return server.client(login.user, login.password)
