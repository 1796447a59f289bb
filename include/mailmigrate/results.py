"""What a pass reports: per folder and per account, small enough for an XCom summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def quota_text(used: int | None, limit: int | None) -> str:
    """``quota 1.2 MB of 10.0 MB used (12%)``, ``1.2 MB used, no quota limit`` or ``no quota``."""
    if not limit:
        return "no quota" if used is None else f"{human_bytes(used)} used, no quota limit"
    used = used or 0
    return f"quota {human_bytes(used)} of {human_bytes(limit)} used ({100 * used // limit}%)"


def human_bytes(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


@dataclass
class MessageFailure:
    """One message the destination refused or the source could not deliver (``kind``
    "refused", "unreadable"), or one copied not exactly ("copied, not identical": flags the
    destination cannot store, bytes it changed), with the server's reason."""

    folder: str
    ref: str
    size: int
    reason: str
    kind: str = "refused"


@dataclass
class FolderResult:
    source: str
    destination: str
    source_messages: int = 0
    source_bytes: int = 0
    destination_messages: int = 0
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0  # already on the destination
    flags_updated: int = 0
    deleted: int = 0
    failed: int = 0
    missing: int = 0  # selected by the pass, yet not on the destination when checked after it
    renamed: str | None = None
    error: str | None = None
    full_compare: bool = False
    notices: list[MessageFailure] = field(default_factory=list)  # copied, not exactly

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0 and self.missing == 0


@dataclass
class AccountResult:
    """The outcome of one pass (initial or delta) over one account."""

    account: str
    phase: str
    folders: list[FolderResult] = field(default_factory=list)
    failures: list[MessageFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the owner: how the folders were mapped
    seconds: float = 0.0
    verify_seconds: float = 0.0  # of ``seconds``: the check that the destination holds it all
    error: str | None = None
    # the same pass's calendars, contacts and tasks (mailmigrate.groupware.account.pass_summary)
    groupware: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.ok for f in self.folders)

    @property
    def notices(self) -> list[MessageFailure]:
        """Messages copied, but not identical (flags the destination cannot store, bytes it
        changed as it stored them)."""
        return [notice for folder in self.folders for notice in folder.notices]

    def totals(self) -> dict[str, int]:
        keys = ("source_messages", "source_bytes", "copied", "copied_bytes", "skipped",
                "flags_updated", "deleted", "failed", "missing")  # fmt: skip
        return {k: sum(getattr(f, k) for f in self.folders) for k in keys}

    def to_dict(self, *, max_failures: int = 20) -> dict[str, Any]:
        """A JSON-able summary; per-folder rows only for folders with work, errors or renames."""
        return {
            "account": self.account,
            "phase": self.phase,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "verify_seconds": round(self.verify_seconds, 3),
            "error": self.error,
            "totals": self.totals(),
            "folders": [
                {k: v for k, v in asdict(f).items() if k != "notices"}
                for f in self.folders
                if any(
                    (f.copied, f.failed, f.missing, f.error, f.renamed, f.flags_updated, f.deleted)
                )
            ],
            "folder_count": len(self.folders),
            "failures": [asdict(x) for x in self.failures[:max_failures]],
            "failures_omitted": max(0, len(self.failures) - max_failures),
            "notices": [asdict(x) for x in self.notices[:max_failures]],
            "notices_omitted": max(0, len(self.notices) - max_failures),
            **({"groupware": self.groupware} if self.groupware is not None else {}),
        }

    def summary_lines(self) -> list[str]:
        t = self.totals()
        rate = t["copied"] / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.phase} pass: {t['copied']} copied ({human_bytes(t['copied_bytes'])}), "
            f"{t['skipped']} already there, {t['flags_updated']} flag updates, "
            f"{t['deleted']} deleted, {t['failed']} failed, {t['missing']} missing, "
            f"{len(self.folders)} folders, "
            f"{self.seconds:.1f} s ({rate:.0f} msg/s)"
        ]
        for f in self.folders:
            if f.error:
                lines.append(f"folder {f.source}: FAILED: {f.error}")
            if f.missing:
                lines.append(f"folder {f.source}: FAILED: {f.missing} messages missing on the "
                             f"destination ({f.destination}) after the pass")  # fmt: skip
            if f.renamed:
                lines.append(f"folder {f.source} -> {f.destination}: renamed ({f.renamed})")
        for failure in (*self.failures, *self.notices):
            lines.append(
                f"message {failure.folder} uid {failure.ref} ({human_bytes(failure.size)}): "
                f"{failure.kind}: {failure.reason}"
            )
        if self.error:
            lines.append(f"FAILED: {self.error}")
        return lines


@dataclass
class PreflightResult:
    """The `test` step: can this account be migrated, and how."""

    account: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    destination: dict[str, Any] = field(default_factory=dict)
    folders: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, Any] | None = None  # a label-based source's plan (mailmigrate.labels)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
            "source": self.source,
            "destination": self.destination,
            "folders": self.folders,
            "labels": self.labels,
        }

    def summary_lines(self) -> list[str]:
        lines = []
        for side, facts in (("source", self.source), ("destination", self.destination)):
            if facts:
                lines.append(
                    f"{side}: {facts.get('server', '?')} separator {facts.get('separator')!r} "
                    f"prefix {facts.get('namespace_prefix', '')!r}, "
                    f"{quota_text(facts.get('quota_used'), facts.get('quota_limit'))}"
                )
        for f in self.folders:
            target = f["destination"] + (f" (renamed: {f['renamed']})" if f.get("renamed") else "")
            lines.append(
                f"folder {f['source']}: {f['messages']} messages, {human_bytes(f['bytes'])} -> {target}"
            )
        lines += (self.labels or {}).get("lines", [])
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        lines.append("ready to migrate" if self.ok else "cannot be migrated as it is")
        return lines
