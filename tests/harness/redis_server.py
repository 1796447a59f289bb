"""A real Redis server for tests (Debian's ``redis-server``): the Celery broker of a test stack.

Runs in the foreground on a free loopback port with a password, no persistence, its files in a
temporary directory.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.dovecot import free_port

REDIS_BINARY = "/usr/bin/redis-server"
START_TIMEOUT = 30.0


class RedisError(RuntimeError):
    """The test server could not be started; the text says why."""


class RedisServer:
    """One redis-server process on 127.0.0.1.

    :param root: a directory for its log and working files; removed by :meth:`stop`.
    """

    host = "127.0.0.1"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="mailmigrate-redis-")).resolve()
        self.port = free_port(self.host)
        self.password = secrets.token_urlsafe(16)
        self.log_path = self.root / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

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
        self._process = subprocess.Popen(
            [REDIS_BINARY, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _running.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
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

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, remove: bool = True) -> None:
        process, self._process = self._process, None
        _running.discard(self)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


_running: set[RedisServer] = set()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_running):
        server.stop()
