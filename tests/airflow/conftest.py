"""Session fixtures of the Airflow-layer tests: one SMTP server, and two migrations run through
``dag.test()`` against real Dovecot servers, built once and read by several test modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.dovecot import DovecotServer
from harness.ops_helpers import Run, SmtpSink, failing_migration, main_migration


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpSink]:
    """The session's SMTP server on loopback; it keeps every mail it accepts."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def main_migration_run(
    legacy_imap: DovecotServer,
    modern_imap: DovecotServer,
    new_account: Callable,
    session_dns_servers: Callable,
    smtp: SmtpSink,
    airflow_db: Path,
) -> Run:
    """Two accounts the whole way through (:func:`harness.ops_helpers.main_migration`)."""
    return main_migration(legacy_imap, modern_imap, new_account, session_dns_servers, smtp)


@pytest.fixture(scope="session")
def failing_migration_run(
    dovecot_factory: Callable,
    legacy_imap: DovecotServer,
    new_account: Callable,
    smtp: SmtpSink,
    airflow_db: Path,
) -> Run:
    """One account whose initial copy fails for good
    (:func:`harness.ops_helpers.failing_migration`)."""
    return failing_migration(dovecot_factory, legacy_imap, new_account, smtp)
