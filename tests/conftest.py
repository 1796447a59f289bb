"""Shared fixtures: real Dovecot servers, fresh accounts, an isolated Airflow, DNS servers.

Airflow reads its configuration once, when first imported, so the isolated AIRFLOW_HOME is set up
here at import time, before any test module can import airflow.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# tests/ is on sys.path by pyproject's [tool.pytest.ini_options] pythonpath.
from harness.airflow_env import (
    configure_airflow_environment,
    migrate_metadata_db,
    remove_airflow_home,
)

AIRFLOW_HOME = configure_airflow_environment()

from harness.dovecot import DovecotServer  # noqa: E402 - after Airflow's environment is set

# Fixtures that live with their servers in the harness (the DNS servers: ``dns_servers``).
pytest_plugins = ["harness.dns"]

_account_numbers = itertools.count(1)


def pytest_unconfigure(config: pytest.Config) -> None:
    remove_airflow_home(AIRFLOW_HOME)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of the fault, bad-input, TLS and secrets suites (harness/figures.py)."""
    from harness.figures import write_summary

    write_summary(terminalreporter)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The metadata DB, migrated once per session (SQLite under the test AIRFLOW_HOME)."""
    migrate_metadata_db()
    return AIRFLOW_HOME


class _ServerPool:
    """Starts Dovecot servers on demand and stops and deletes them all at the end."""

    def __init__(self) -> None:
        self.servers: list[DovecotServer] = []

    def __call__(self, layout: str, **kwargs: object) -> DovecotServer:
        # Not pytest's tmp_path: /tmp/pytest-of-root is 0700 and Dovecot's users must traverse it.
        root = Path(tempfile.mkdtemp(prefix=f"mailmigrate-dovecot-{layout}-"))
        server = DovecotServer(root, layout, **kwargs)
        self.servers.append(server)
        server.start()
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot_factory() -> Iterator[Callable[..., DovecotServer]]:
    """Start more Dovecot servers for the whole session: ``dovecot_factory(layout, **kwargs)``."""
    pool = _ServerPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def legacy_imap(dovecot_factory: Callable[..., DovecotServer]) -> DovecotServer:
    """Dovecot with ``INBOX.`` prefix, ``.`` separator, Maildir++, no special-use."""
    return dovecot_factory("legacy")


@pytest.fixture(scope="session")
def modern_imap(dovecot_factory: Callable[..., DovecotServer]) -> DovecotServer:
    """Dovecot with ``/`` separator, no prefix, special-use Sent/Trash/Drafts/Junk/Archive."""
    return dovecot_factory("modern")


@pytest.fixture
def private_imap() -> Iterator[Callable[..., DovecotServer]]:
    """Servers for this test alone (to restart, kill or break): ``private_imap(layout, **kw)``."""
    pool = _ServerPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def new_account() -> Callable[..., tuple[str, str]]:
    """``new_account(server, quota_bytes=None) -> (user, password)``: a fresh, unused account."""

    def create(server: DovecotServer, quota_bytes: int | None = None) -> tuple[str, str]:
        user = f"u{next(_account_numbers)}@example.com"
        password = secrets.token_urlsafe(12)
        server.add_account(user, password, quota_bytes=quota_bytes)
        return user, password

    return create
