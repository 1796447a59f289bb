"""Shared pieces of the tests of what ops and mailbox owners see (status page, owner reports,
notifications, approval): a real SMTP server on loopback (aiosmtpd) that keeps every mail it
receives, Airflow's real API server app, and migrations run through ``dag.test()`` against real
Dovecot servers once per session and shared by the test modules (the session fixtures of
``tests/airflow/conftest.py``).
"""

from __future__ import annotations

import atexit
import email
import email.policy
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

from harness.airflow_env import REPO_ROOT, run_dag_test
from harness.corpus import make_message, seed_folder
from harness.dovecot import free_port

# -- SMTP ------------------------------------------------------------------------------------


class SmtpSink:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[list[str], EmailMessage]] = []
        self._changed = threading.Condition()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._changed:
            self.messages.append((list(envelope.rcpt_tos), message))
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def connection(self, **extra: Any) -> str:
        """This server as an Airflow SMTP connection (JSON form), plain text on loopback."""
        return json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0,
                      "from_email": "migration@example.com", **extra},
        })  # fmt: skip

    def to(self, address: str) -> list[EmailMessage]:
        """The messages delivered to ``address`` (envelope recipient), oldest first."""
        with self._changed:
            return [m for rcpts, m in self.messages if address in rcpts]

    def wait_for(self, address: str, count: int, timeout: float = 30) -> list[EmailMessage]:
        """The messages to ``address`` once there are at least ``count`` (else what there is)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len([1 for rcpts, _ in self.messages if address in rcpts]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        return self.to(address)


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def attachments(message: EmailMessage) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content() for part in message.iter_attachments()}


# -- the API server --------------------------------------------------------------------------


@cache
def api_app() -> Any:
    """Airflow's API server app (core API, UI plugins, the status page) on the test DB."""
    from airflow.api_fastapi.app import create_app

    return create_app("core")


def token(username: str = "admin", role: str | None = "admin") -> str:
    """A JWT of a simple-auth-manager user (role ``None``: no permission at all)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    api_app()
    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def client(username: str = "admin", role: str | None = "admin") -> Any:
    """A test client of the API server, logged in like the UI (the ``_token`` cookie)."""
    from fastapi.testclient import TestClient

    test_client = TestClient(api_app())
    test_client.cookies.set("_token", token(username, role))
    return test_client


# -- migrations through dag.test() -----------------------------------------------------------


@dataclass
class Run:
    """One finished DAG run: its ids, task states and XComs (``(task_id, key) -> value``)."""

    dag: Any
    run_id: str
    state: str
    states: dict[str, str]
    xcoms: dict[tuple[str, str], Any]
    plans: Path
    accounts: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_id, key))


def dag_folder(prefix: str) -> Path:
    """A new DAG folder: a copy of the real dags/migrations.py and an empty plans/."""
    folder = Path(tempfile.mkdtemp(prefix=f"mailmigrate-{prefix}-"))
    (folder / "plans").mkdir()
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", folder / "migrations.py")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def set_connection(conn_id: str, value: str | dict) -> None:
    """An Airflow connection for the rest of the session (``AIRFLOW_CONN_<ID>``)."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = (
        value if isinstance(value, str) else json.dumps(value)
    )


def new_mailbox(
    source: Any, destination: Any, new_account: Callable, folders: dict[str, list[bytes]]
) -> dict[str, str]:
    """Fresh accounts on both servers, the source seeded with ``folders`` (name -> messages)."""
    user, password = new_account(source)
    dst_user, dst_password = new_account(destination)
    client = source.client(user, password)
    for folder, messages in folders.items():
        seed_folder(client, folder, [(raw, ("\\Seen",), datetime(2024, 5, 1, tzinfo=UTC)) for raw in messages])  # fmt: skip
    client.logout()
    return {"source_user": user, "source_password": password,
            "destination_user": dst_user, "destination_password": dst_password}  # fmt: skip


def write_accounts(plans: Path, name: str, accounts: list[dict[str, str]]) -> str:
    rows = ["source_user,source_password,destination_user,destination_password"]
    rows += [",".join(a[k] for k in ("source_user", "source_password", "destination_user",
                                     "destination_password")) for a in accounts]  # fmt: skip
    (plans / f"{name}_accounts.csv").write_text("\n".join(rows) + "\n")
    return f"{name}_accounts.csv"


def run_migration(folder: Path, run_conf: dict | None = None, accounts=None) -> Run:
    """Build the folder's DAG (one plan), run it once with ``dag.test()``, collect the outcome:
    states and XComs keyed by ``<account group>.<step>`` (:func:`operators.step_key`)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from mailmigrate_airflow.factory import build_dags
    from mailmigrate_airflow.runs import account_maps, step_key

    dag, _deltas = build_dags(str(folder / "migrations.py")).values()
    run = run_dag_test(dag, run_conf=run_conf or {})
    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, map_indexes=None)
        found = [(x.task_id, x.map_index, x.key, XComModel.deserialize_value(x))
                 for x in session.scalars(query)]  # fmt: skip
        maps = account_maps({t: v for t, i, k, v in found if i == -1 and k == "return_value"})
        xcoms = {(step_key(t, i, maps), k): v for t, i, k, v in found}
        states = {step_key(ti.task_id, ti.map_index, maps): str(ti.state)
                  for ti in run.get_task_instances(session=session)}  # fmt: skip
    return Run(dag, run.run_id, str(run.state), states, xcoms, folder / "plans", accounts or [])


def messages(seed: int, count: int, size: int = 1500) -> list[bytes]:
    return [make_message(seed + i, size=size) for i in range(count)]


# -- the shared migrations -------------------------------------------------------------------

NEW_MX = "mx.new.example"
OPS = "ops@example.com"
OWNER_SUBJECT_OVERRIDE = "{{ plan }}: your mailbox {{ report.destination_account }} ({{ step }})\n"
CLIENT_SETTINGS = """\
  client_settings:
    imap: {host: imap.new.example, port: 993, security: ssl}
    smtp: {host: smtp.new.example, port: 587, security: starttls}
    autoconfig: https://autoconfig.new.example/mail/config-v1.1.xml
"""


def main_migration(
    legacy: Any, modern: Any, new_account: Callable, dns_servers: Callable, sink: SmtpSink
) -> Run:
    """Two accounts the whole way through (test, initial copy, MX already changed in DNS, delta
    in an "any" window), with owner reports (plan template for the owner mail's subject), owner
    mails after both copies and ops mails on cutover_ready, task_failed and finished. Built once
    per session by the ``main_migration_run`` fixture (tests/airflow/conftest.py)."""
    accounts = [
        new_mailbox(legacy, modern, new_account, {
            "INBOX": messages(91_000, 5), "INBOX.Sent": messages(91_100, 2),
            "INBOX.Projects": messages(91_200, 1, size=6000)}),
        new_mailbox(legacy, modern, new_account, {"INBOX": messages(92_000, 3)}),
    ]  # fmt: skip
    auth, resolver = dns_servers(2)
    for server in (auth, resolver):
        server.set_mx("example.com", [NEW_MX], ttl=1)
    folder = dag_folder("ops")
    plans = folder / "plans"
    name = "ops_" + accounts[0]["source_user"].split("@")[0]
    (plans / "mail_templates").mkdir()
    (plans / "mail_templates" / "owner_report.subject.j2").write_text(OWNER_SUBJECT_OVERRIDE)
    for conn_id, value in (("mmops_old", legacy.connection("x")),
                           ("mmops_new", modern.connection("x")),
                           ("mmops_smtp", sink.connection())):  # fmt: skip
        set_connection(conn_id, value)
    (plans / f"{name}.yaml").write_text(
        f"name: {name}\n"
        "source: {connection: mmops_old}\n"
        "destination: {connection: mmops_new}\n"
        f"accounts: {write_accounts(plans, name, accounts)}\n"
        "state_dir: state\nretries: 0\n"
        f"mx:\n  expect: [{NEW_MX}]\n  resolvers: [{json.dumps(resolver.address)}]\n"
        f"  authoritative: [{json.dumps(auth.address)}]\n  poke_interval: 1s\n  timeout: 2m\n"
        "delta: {timezone: Europe/Berlin, window: any}\n"
        'folders: {rename: {"Projects": "Archive/Projects"}}\n'
        f"reports:\n  url: {folder / 'reports'}\n  templates: mail_templates\n"
        f"{CLIENT_SETTINGS}"
        '  mail_owners: {smtp_connection: mmops_smtp, from: "IT team <it@example.com>"}\n'
        "notify:\n"
        "  - notifier: mailmigrate_airflow.notifiers.MigrationMailNotifier\n"
        "    on: [cutover_ready, task_failed, finished]\n"
        f"    args: {{to: {OPS}, smtp_conn_id: mmops_smtp}}\n"
    )
    run = run_migration(folder, accounts=accounts)
    run.extra["reports"] = folder / "reports"
    return run


def failing_migration(
    dovecot_factory: Callable, legacy: Any, new_account: Callable, sink: SmtpSink
) -> Run:
    """One account whose largest message the destination refuses (its size limit): the initial
    copy fails for good, the run fails; the owner is mailed the report, ops the failure. Built
    once per session by the ``failing_migration_run`` fixture (tests/airflow/conftest.py)."""
    small = dovecot_factory("modern", max_mail_size=40_000)
    account = new_mailbox(legacy, small, new_account, {
        "INBOX": messages(93_000, 2) + [make_message(93_100, size=90_000)]})  # fmt: skip
    folder = dag_folder("fail")
    plans = folder / "plans"
    name = "fail_" + account["source_user"].split("@")[0]
    set_connection("mmfail_old", legacy.connection("x"))
    set_connection("mmfail_new", small.connection("x"))
    set_connection("mmops_smtp", sink.connection())
    (plans / f"{name}.yaml").write_text(
        f"name: {name}\n"
        "source: {connection: mmfail_old}\n"
        "destination: {connection: mmfail_new}\n"
        f"accounts: {write_accounts(plans, name, [account])}\n"
        "state_dir: state\nretries: 2\n"
        f"reports:\n  url: {folder / 'reports'}\n"
        "  mail_owners: {smtp_connection: mmops_smtp, after: initial_copy}\n"
        "notify:\n"
        "  - notifier: mailmigrate_airflow.notifiers.MigrationMailNotifier\n"
        "    on: [task_failed, finished]\n"
        "    args: {to: ops-failures@example.com, smtp_conn_id: mmops_smtp}\n"
    )
    run = run_migration(folder, {"stop": "initial_copy"}, accounts=[account])
    run.extra["reports"] = folder / "reports"
    return run
