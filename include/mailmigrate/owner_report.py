"""The owner report: what one copy did to one mailbox, for the person who owns it.

:func:`build_owner_report` joins the pass's :class:`~mailmigrate.results.AccountResult` with,
when available, the verified per-folder comparison of both sides
(:class:`~mailmigrate.report.AccountReport`); :func:`render_html`, :func:`render_csv` and
:func:`render_text` turn it into a page, a spreadsheet and plain text. Pure functions: no I/O, no
Airflow. Every value from a mailbox (folder names, server replies) is escaped in HTML and
neutralised in CSV (a cell starting with ``=``, ``+``, ``-`` or ``@`` is not a formula).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mailmigrate.results import MessageFailure

if TYPE_CHECKING:
    from mailmigrate.connections import Endpoint
    from mailmigrate.plan_model import Account, ClientSettings
    from mailmigrate.report import AccountReport
    from mailmigrate.results import AccountResult

DEFAULT_PORTS = {("imap", "ssl"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143,
                 ("smtp", "ssl"): 465, ("smtp", "starttls"): 587, ("smtp", "none"): 25}  # fmt: skip


@dataclass
class ReportFolder:
    """One folder's line: counts on both sides (``None`` where not known) and this pass's work."""

    source: str
    destination: str
    source_messages: int | None = None
    source_bytes: int | None = None
    destination_messages: int | None = None
    destination_bytes: int | None = None
    copied: int = 0
    copied_bytes: int = 0
    missing: int | None = None  # source messages not on the destination (verified)
    extra: int | None = None  # destination messages without a source twin (verified)
    refused: int = 0
    renamed: str | None = None
    error: str | None = None


@dataclass
class ClientServer:
    """One line of the client settings: a protocol's server as a mail client enters it."""

    label: str
    host: str
    port: int | None
    security: str


@dataclass
class OwnerReport:
    """The report of one pass over one account (see :func:`build_owner_report`)."""

    plan: str
    account: str
    destination_account: str
    phase: str
    generated_at: dt.datetime
    seconds: float = 0.0
    error: str | None = None
    folders: list[ReportFolder] = field(default_factory=list)
    failures: list[MessageFailure] = field(default_factory=list)
    changed: list[MessageFailure] = field(default_factory=list)  # copied, not identical
    excluded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the folders were mapped, in plain words
    verified: bool = False  # counts come from listing both sides after the pass
    comparison_error: str | None = None
    servers: list[ClientServer] = field(default_factory=list)
    autoconfig: str | None = None
    groupware: dict[str, Any] | None = None  # calendars, contacts, tasks (AccountResult.groupware)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and not self.failures
            and not self.changed
            and all(f.error is None and f.refused == 0 and not f.missing for f in self.folders)
            and not (self.groupware or {}).get("problem_count")
        )

    def totals(self) -> dict[str, int | None]:
        """Sums over the folders; a sum is ``None`` when some folder's value is unknown."""
        keys = ("source_messages", "source_bytes", "destination_messages", "destination_bytes",
                "copied", "copied_bytes", "missing", "extra", "refused")  # fmt: skip
        sums: dict[str, int | None] = {}
        for key in keys:
            values = [getattr(f, key) for f in self.folders]
            sums[key] = None if any(v is None for v in values) else sum(values)
        return sums

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-able summary (totals and counts, no folder list)."""
        return {
            "account": self.account,
            "destination_account": self.destination_account,
            "phase": self.phase,
            "ok": self.ok,
            "verified": self.verified,
            "totals": self.totals(),
            "folders": len(self.folders),
            "renamed": sum(1 for f in self.folders if f.renamed),
            "failed_folders": sum(1 for f in self.folders if f.error),
            "refused": len(self.failures),
            "not_identical": len(self.changed),
            "error": self.error,
            "comparison_error": self.comparison_error,
            "generated_at": self.generated_at.isoformat(),
            **({"groupware": {k: self.groupware[k] for k in ("source", "destination",
                                                               "problem_count")}}
               if self.groupware else {}),
        }  # fmt: skip


def client_servers(
    settings: ClientSettings | None, destination: Endpoint | None
) -> list[ClientServer]:
    """The servers a mail client needs: the plan's ``client_settings``, else for IMAP the
    destination connection's host (its port, or the protocol's default for its security)."""
    servers = []
    imap = settings.imap if settings else None
    if imap is not None:
        port = imap.port or DEFAULT_PORTS[("imap", imap.security)]
        servers.append(ClientServer("Incoming mail (IMAP)", imap.host, port, imap.security))
    elif destination is not None and destination.kind == "imap":
        security = str(destination.option("security", "ssl"))
        port = destination.port or DEFAULT_PORTS.get(("imap", security), 993)
        servers.append(ClientServer("Incoming mail (IMAP)", destination.host, port, security))
    elif destination is not None and destination.kind == "ews":
        servers.append(ClientServer("Exchange (Outlook: add the account by its address)",
                                    destination.host, destination.port or 443, "ssl"))  # fmt: skip
    smtp = settings.smtp if settings else None
    if smtp is not None:
        port = smtp.port or DEFAULT_PORTS[("smtp", smtp.security)]
        servers.append(ClientServer("Outgoing mail (SMTP)", smtp.host, port, smtp.security))
    return servers


def build_owner_report(
    plan_name: str,
    account: Account,
    result: AccountResult,
    comparison: AccountReport | None = None,
    *,
    comparison_error: str | None = None,
    settings: ClientSettings | None = None,
    destination: Endpoint | None = None,
    generated_at: dt.datetime | None = None,
) -> OwnerReport:
    """The owner report of one pass.

    :param comparison: both sides listed after the pass; without it, the counts are the pass's
        own (what it saw on the source, what the sync state holds for the destination).
    :param comparison_error: why there is no comparison (shown in the report).
    :param settings: the plan's ``reports.client_settings``.
    :param destination: the destination endpoint (default for the IMAP client settings).
    """
    report = OwnerReport(
        plan=plan_name,
        account=account.source_user,
        destination_account=account.destination_user,
        phase=result.phase,
        generated_at=generated_at or dt.datetime.now(dt.UTC),
        seconds=result.seconds,
        error=result.error,
        failures=list(result.failures),
        changed=list(result.notices),
        notes=list(result.notes),
        verified=comparison is not None,
        comparison_error=comparison_error,
        servers=client_servers(settings, destination),
        autoconfig=settings.autoconfig if settings else None,
        groupware=result.groupware,
    )
    passes = {f.source: f for f in result.folders}
    refused: dict[str, int] = {}
    for failure in result.failures:
        refused[failure.folder] = refused.get(failure.folder, 0) + 1
    seen = set()
    for compared in comparison.folders if comparison else []:
        done = passes.get(compared.source)
        seen.add(compared.source)
        report.folders.append(
            ReportFolder(
                source=compared.source,
                destination=compared.destination,
                source_messages=compared.source_messages,
                source_bytes=compared.source_bytes,
                destination_messages=compared.destination_messages if compared.exists else 0,
                destination_bytes=compared.destination_bytes if compared.exists else 0,
                copied=done.copied if done else 0,
                copied_bytes=done.copied_bytes if done else 0,
                missing=compared.missing,
                extra=compared.extra,
                refused=done.failed if done else refused.get(compared.source, 0),
                renamed=compared.renamed or (done.renamed if done else None),
                error=done.error if done else None,
            )
        )
    for done in result.folders:
        if done.source in seen:
            continue
        report.folders.append(
            ReportFolder(
                source=done.source,
                destination=done.destination,
                source_messages=done.source_messages,
                # A delta that asked the source for changes only knows the new messages' sizes.
                source_bytes=done.source_bytes if done.full_compare else None,
                destination_messages=done.destination_messages,
                copied=done.copied,
                copied_bytes=done.copied_bytes,
                missing=done.missing or None,  # the pass's own check found some missing
                refused=done.failed,
                renamed=done.renamed,
                error=done.error or ("not found when the sides were compared" if comparison else None),
            )
        )  # fmt: skip
    if comparison is not None:
        report.excluded = list(comparison.excluded)
    report.folders.sort(key=lambda f: (f.source != "INBOX", f.source.casefold()))
    return report


def report_dict(report: OwnerReport) -> dict[str, Any]:
    """The whole report as plain data (for tests and JSON consumers)."""
    data = asdict(report)
    data["generated_at"] = report.generated_at.isoformat()
    data["ok"] = report.ok
    data["totals"] = report.totals()
    return data


__all__ = [
    "ClientServer", "OwnerReport", "ReportFolder", "build_owner_report", "client_servers",
    "report_dict",
]  # fmt: skip
