"""What a loaded migration plan is: the frozen dataclasses :func:`mailmigrate.plan.load_plan`
returns (:class:`Plan` with its :class:`Account` list and its sections), :class:`Problem` and
:class:`PlanError` for an invalid plan, and the names a plan file may use (its keys, the accounts
CSV columns, the weekdays). Nothing here reads files; the engine imports these types directly or
through :mod:`mailmigrate.plan`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def group_id(source_user: str) -> str:
    """The Airflow task-group id of an account: ``alice@example.com`` -> ``alice_example_com``."""
    return re.sub(r"[^\w-]", "_", source_user)


@dataclass(frozen=True)
class Account:
    """One mailbox to move. Passwords are ``None`` when admin credentials are used."""

    source_user: str
    destination_user: str
    source_password: str | None = field(default=None, repr=False)
    destination_password: str | None = field(default=None, repr=False)
    mx_domain: str = ""
    line: int = 0  # line in the accounts CSV (or plan file for inline accounts)

    @property
    def group_id(self) -> str:
        """The Airflow task-group id (:func:`group_id`)."""
        return group_id(self.source_user)


@dataclass(frozen=True)
class MxCheck:
    expect: tuple[str, ...]
    resolvers: tuple[str, ...] = ()
    authoritative: tuple[str, ...] = ()
    poke_interval: float = 600.0  # seconds
    timeout: float = 7 * 86400.0  # seconds


@dataclass(frozen=True)
class DeltaWindow:
    """``delta``: when deltas run (the window), and how long the scheduled deltas after the MX
    change go on (see :mod:`mailmigrate.quiet`). Durations in seconds."""

    timezone: str = "UTC"
    window: tuple[dt.time, dt.time] | None = None  # None: "any"
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday = 0
    quiet_period: float = 48 * 3600.0  # no new mail for this long: the account is done
    max_after_mx: float = 7 * 86400.0  # ... or this long after the MX release, whichever first
    before_mx: bool = False  # nightly deltas while the MX change waits
    repeat: float | None = None  # again every so often inside an open window; None: once


@dataclass(frozen=True)
class FolderRules:
    exclude: tuple[str, ...] = ()  # glob patterns over source names with "/" as separator
    rename: dict[str, str] = field(default_factory=dict)  # source name -> destination name, "/"
    labels: str = "archive"  # label-based sources (Gmail): "archive" or "as_folders"


@dataclass(frozen=True)
class CopyOptions:
    batch_messages: int = 500
    batch_bytes: int = 16 * 1024 * 1024
    messages_per_second: float | None = None
    bytes_per_second: float | None = None
    propagate_deletions: bool = False
    parallel_folders: int = 2


@dataclass(frozen=True)
class NotifierSpec:
    """One entry of the plan's ``notify`` list: an Airflow notifier class, by import path, and its
    keyword arguments. The engine never imports it; the Airflow layer does, at cutover."""

    notifier: str  # dotted path, e.g. airflow.providers.smtp.notifications.smtp.SmtpNotifier
    args: dict[str, Any] = field(default_factory=dict)  # plain YAML data, templated when sent
    line: int = 0  # line in the plan file
    on: tuple[str, ...] = ("cutover_ready",)  # the events it is sent for (NOTIFY_EVENTS)


@dataclass(frozen=True)
class ServerSettings:
    """How a mail client reaches one server of the destination (for the owner report)."""

    host: str
    port: int | None = None
    security: str = "ssl"  # ssl, starttls or none


@dataclass(frozen=True)
class ClientSettings:
    """The destination's settings for mail clients, printed at the end of each owner report.

    ``imap`` defaults to the destination connection's host and port when it is IMAP; ``smtp``
    has no default (the migration never sends mail through it).
    """

    imap: ServerSettings | None = None
    smtp: ServerSettings | None = None
    autoconfig: str | None = None  # URL of the provider's autoconfig / setup instructions


@dataclass(frozen=True)
class OwnerMail:
    """``reports.mail_owners``: mail each mailbox owner the report of a copy."""

    smtp_connection: str = "smtp_default"
    sender: str | None = None  # ``from``; default: the SMTP connection's from_email
    after: tuple[str, ...] = ("initial_copy", "delta_copy")
    line: int = 0


@dataclass(frozen=True)
class ReportOptions:
    """``reports``: the owner report written after every copy.

    :param url: where reports are stored (an fsspec URL or a path relative to the plan); ``None``:
        ``$MAILMIGRATE_REPORTS_URL``, else a folder under ``$AIRFLOW_HOME``.
    :param conn_id: the Airflow connection the object storage uses (e.g. for s3://).
    :param compare: after each copy, list both sides again to report verified counts.
    :param templates: a folder of Jinja templates overriding the shipped mail templates.
    """

    enabled: bool = True
    url: str | None = None
    conn_id: str | None = None
    compare: bool = True
    templates: Path | None = None
    client_settings: ClientSettings = field(default_factory=ClientSettings)
    mail_owners: OwnerMail | None = None


@dataclass(frozen=True)
class Approval:
    """``approval``: a human approves the full run after the pilot accounts' ``after`` step.

    The pilot accounts (``accounts``) run first; every other account's ``initial_copy`` and the
    cutover wait for the approval task.
    """

    accounts: tuple[str, ...]  # source users of the pilot accounts
    after: str = "initial_copy"  # test or initial_copy
    subject: str | None = None
    body: str | None = None
    approvers: tuple[str, ...] = ()  # Airflow user ids allowed to answer; empty: any
    timeout: float | None = None  # seconds; None: wait as long as it takes
    line: int = 0


@dataclass(frozen=True)
class GroupwareOptions:
    """``groupware``: the DAV connections serving calendars, contacts and tasks on each side
    (see :mod:`mailmigrate.plan_groupware`)."""

    source_connection: str
    destination_connection: str
    propagate_deletions: bool = False


@dataclass(frozen=True)
class Plan:
    path: Path
    name: str
    source_connection: str
    destination_connection: str
    accounts: tuple[Account, ...]
    mx: MxCheck | None = None
    delta: DeltaWindow = field(default_factory=DeltaWindow)
    folders: FolderRules = field(default_factory=FolderRules)
    copy: CopyOptions = field(default_factory=CopyOptions)
    parallel_accounts: int = 4
    retries: int = 3
    pool: str | None = None
    state_dir: Path | None = None
    notify: tuple[NotifierSpec, ...] = ()
    reports: ReportOptions = field(default_factory=ReportOptions)
    approval: Approval | None = None
    kinds: tuple[str, ...] = ("mail",)
    groupware: GroupwareOptions | None = None

    @property
    def dag_id(self) -> str:
        return f"migration_{self.name}"

    @property
    def deltas_dag_id(self) -> str:
        """The scheduled after-hours deltas (see :mod:`mailmigrate.quiet`)."""
        return f"migration_{self.name}_deltas"

    def account(self, source_user: str) -> Account:
        for account in self.accounts:
            if account.source_user == source_user:
                return account
        raise KeyError(f"{self.path}: no account with source_user {source_user!r}")


ACCOUNT_FIELDS = (
    "source_user",
    "source_password",
    "destination_user",
    "destination_password",
    "mx_domain",
)
REQUIRED_ACCOUNT_FIELDS = ("source_user", "destination_user")
CSV_HEADER = "source_user,source_password,destination_user,destination_password"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

TOP_KEYS = (
    "name", "source", "destination", "accounts", "mx", "delta", "folders", "copy",
    "parallel_accounts", "retries", "pool", "state_dir", "notify", "reports", "approval",
    "kinds", "groupware",
)  # fmt: skip
KINDS = ("mail", "calendars", "contacts", "tasks")
GROUPWARE_KEYS = ("source", "destination", "propagate_deletions")
MX_KEYS = ("expect", "resolvers", "authoritative", "poke_interval", "timeout")
DELTA_KEYS = (
    "timezone", "window", "weekdays", "quiet_period", "max_after_mx", "before_mx", "repeat",
)  # fmt: skip
FOLDER_KEYS = ("exclude", "rename", "labels")
LABEL_MODES = ("archive", "as_folders")  # see mailmigrate.labels
COPY_KEYS = (
    "batch_messages", "batch_bytes", "messages_per_second", "bytes_per_second",
    "propagate_deletions", "parallel_folders",
)  # fmt: skip
NOTIFY_KEYS = ("notifier", "args", "on")
NOTIFY_EVENTS = (
    "cutover_ready", "task_failed", "finished", "approval_requested", "account_finished",
    "migration_finished",
)  # fmt: skip
REPORT_KEYS = (
    "enabled",
    "url",
    "conn_id",
    "compare",
    "templates",
    "client_settings",
    "mail_owners",
)
CLIENT_SETTINGS_KEYS = ("imap", "smtp", "autoconfig")
SERVER_SETTINGS_KEYS = ("host", "port", "security")
SECURITY_CHOICES = ("ssl", "starttls", "none")
OWNER_MAIL_KEYS = ("smtp_connection", "from", "after")
OWNER_MAIL_STEPS = ("initial_copy", "delta_copy")
APPROVAL_KEYS = ("accounts", "after", "subject", "body", "approvers", "timeout")
APPROVAL_AFTER = ("test", "initial_copy")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a plan or accounts file, at a 1-based line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"
