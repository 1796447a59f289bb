"""The two local Dovecot servers of a benchmark run, from the test harness (legacy -> modern)."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.dovecot import DovecotServer, process_stats  # noqa: E402

from bench.tools import Login  # noqa: E402


class BenchServers:
    """A legacy-layout source and a modern-layout destination Dovecot, started and stopped
    together, in one temporary directory (outside pytest's 0700 tmp, so Dovecot can reach it).

    :param compression: both offer COMPRESS=DEFLATE (Dovecot's ``imap_zlib``)."""

    def __init__(self, store_dir: str | None = None, *, compression: bool = False) -> None:
        self.store_dir = store_dir
        self.root = Path(tempfile.mkdtemp(prefix="mailmigrate-bench-", dir=store_dir))
        self.root.chmod(0o755)
        self.source = DovecotServer(self.root / "legacy", "legacy", compression=compression)
        self.destination = DovecotServer(self.root / "modern", "modern", compression=compression)

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


def server_cpu_seconds(server: DovecotServer) -> float:
    """CPU seconds the server has used so far: its live processes (one process group) plus the
    finished ones its master has reaped. The difference over a run is the run's server cost."""
    if server.pid is None:
        return float("nan")
    ticks = 0
    for pid, fields in process_stats():
        if int(fields[2]) != server.pid:  # process group
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == server.pid:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime of reaped children
    return ticks / os.sysconf("SC_CLK_TCK")
