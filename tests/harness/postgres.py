"""A real PostgreSQL server for tests: Debian's ``postgresql`` package, on a free loopback port.

The cluster lives in a temporary directory owned by the ``postgres`` user (PostgreSQL refuses to
run as root): ``initdb`` and the server run as that user, the server in the foreground of its own
process group, listening on 127.0.0.1 only, with its Unix socket in the same directory. Tuned for
throwaway data (no fsync), never for production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.dovecot import free_port
from harness.loopback_service import LoopbackService

POSTGRES_USER = "postgres"
START_TIMEOUT = 60.0


class PostgresError(RuntimeError):
    """The test server could not be set up, started or stopped; the text says why."""


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory (``/usr/lib/postgresql/N/bin``)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise PostgresError(
            "no PostgreSQL server found under /usr/lib/postgresql: `make install` installs "
            "Debian's postgresql package"
        )
    return candidates[-1].parent


class PostgresServer(LoopbackService):
    """One PostgreSQL cluster with one database and one login role for an application.

    :param root: a directory to create (or an empty one); removed by :meth:`stop`.
    :param database: the application database to create.
    :param user: its owner, a login role with a random password.
    """

    stop_signal = signal.SIGINT  # fast shutdown: abort sessions, no checkpoint wait
    stop_timeout = 30.0

    def __init__(self, root: Path | None = None, database: str = "airflow", user: str = "airflow"):
        self.root = Path(root or tempfile.mkdtemp(prefix="mailmigrate-postgres-")).resolve()
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.port = free_port(self.host)
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.bindir = postgres_bindir()
        self._owner = pwd.getpwnam(POSTGRES_USER)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application database (psycopg2 driver)."""
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/"
            f"{self.database}"
        )

    def _as_postgres(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            user=self._owner.pw_uid,
            group=self._owner.pw_gid,
            extra_groups=[],
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            **kwargs,  # type: ignore[arg-type]
        )

    def start(self) -> None:
        """initdb, start the server, create the role and database; wait until they answer."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self.root.chmod(0o700)
        with self.log_path.open("ab") as log:
            os.chown(self.log_path, self._owner.pw_uid, self._owner.pw_gid)
            initdb = self._as_postgres(
                [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", POSTGRES_USER,
                 "-A", "trust", "-E", "UTF8", "--no-sync"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            if initdb.wait(120) != 0:
                raise PostgresError(f"initdb failed in {self.data_dir}: {self.log_tail()}")
            self._started(self._as_postgres(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir),
                 "-h", self.host, "-p", str(self.port), "-k", str(self.root),
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=300"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
        self._wait_ready()
        self.psql(
            f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'",
            f"CREATE DATABASE {self.database} OWNER {self.user}",
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise PostgresError(f"postgres exited at start: {self.log_tail()}")
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), timeout=1).close()
                probe = subprocess.run(
                    [str(self.bindir / "pg_isready"), "-h", self.host, "-p", str(self.port)],
                    capture_output=True,
                    check=False,
                )
                if probe.returncode == 0:
                    return
            time.sleep(0.2)
        raise PostgresError(f"postgres did not accept connections within 60 s: {self.log_tail()}")

    def psql(self, *statements: str, database: str = "postgres") -> str:
        """Run SQL statements as the superuser over the Unix socket; return psql's output
        (unaligned, tuples only)."""
        argv = [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"]
        argv += ["-h", str(self.root), "-p", str(self.port), "-U", POSTGRES_USER, "-d", database]
        for statement in statements:
            argv += ["-c", statement]
        done = self._as_postgres(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = done.communicate(timeout=60)[0].decode(errors="replace")
        if done.returncode != 0:
            raise PostgresError(f"psql failed: {output.strip()}")
        return output
