"""A real Redis server for tests (Debian's ``redis-server``): the Celery broker of a test stack.

Runs in the foreground on a free loopback port with a password, no persistence, its files in a
temporary directory.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.dovecot import free_port
from harness.loopback_service import LoopbackService

REDIS_BINARY = "/usr/bin/redis-server"
START_TIMEOUT = 30.0


class RedisError(RuntimeError):
    """The test server could not be started; the text says why."""


class RedisServer(LoopbackService):
    """One redis-server process on 127.0.0.1.

    :param root: a directory for its log and working files; removed by :meth:`stop`.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="mailmigrate-redis-")).resolve()
        self.port = free_port(self.host)
        self.password = secrets.token_urlsafe(16)
        self.log_path = self.root / "redis.log"

    def url(self, db: int = 0) -> str:
        """The ``redis://`` URL of database ``db`` (with the password)."""
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"

    def start(self) -> None:
        if not os.path.exists(REDIS_BINARY):
            raise RedisError(f"{REDIS_BINARY} is missing: `make install` installs redis-server")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "redis.conf"
        config.write_text(
            f"bind {self.host}\nport {self.port}\nrequirepass {self.password}\n"
            f'dir {self.root}\nlogfile "{self.log_path}"\ndaemonize no\nsave ""\n'
            "appendonly no\nprotected-mode yes\n"
        )
        config.chmod(0o600)
        process = subprocess.Popen(
            [REDIS_BINARY, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._started(process)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RedisError(f"redis-server exited at start: {self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.1)
        raise RedisError(f"redis-server did not answer PING within 30 s: {self.log_tail()}")

    def ping(self) -> bool:
        """Whether the server answers an authenticated PING."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = sock.recv(100)
                    if not chunk:
                        break
                    answer += chunk
                return answer == b"+OK\r\n+PONG\r\n"
        except OSError:
            return False
