"""The per-account, per-folder comparison of source and destination.

Read-only on both sides: counts and sizes per folder, and by identity (as multisets) how many
source messages the destination lacks and how many destination messages have no source twin
(for example mail that arrived at the new provider after the MX change).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from mailmigrate import labels
from mailmigrate.connections import Endpoint
from mailmigrate.folders import folder_name
from mailmigrate.plan import Account, Plan
from mailmigrate.results import human_bytes
from mailmigrate.sync import open_pair, plan_folders


@dataclass
class FolderComparison:
    source: str
    destination: str
    source_messages: int
    source_bytes: int
    destination_messages: int
    destination_bytes: int
    missing: int  # source messages not on the destination
    extra: int  # destination messages without a source twin
    renamed: str | None = None
    exists: bool = True


@dataclass
class AccountReport:
    account: str
    destination_account: str
    folders: list[FolderComparison] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.missing == 0 for f in self.folders)

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "destination_account": self.destination_account,
            "ok": self.ok,
            "missing": sum(f.missing for f in self.folders),
            "folders": [asdict(f) for f in self.folders],
            "excluded": self.excluded,
        }

    def summary_lines(self) -> list[str]:
        lines = []
        for f in self.folders:
            state = "complete" if f.missing == 0 else f"{f.missing} MISSING"
            extra = f", {f.extra} only on destination" if f.extra else ""
            lines.append(
                f"{f.source} -> {f.destination}: source {f.source_messages} "
                f"({human_bytes(f.source_bytes)}), destination {f.destination_messages} "
                f"({human_bytes(f.destination_bytes)}): {state}{extra}"
            )
        lines += [f"{name}: excluded by the plan" for name in self.excluded]
        missing = sum(f.missing for f in self.folders)
        lines.append("all source messages are on the destination" if self.ok
                     else f"{missing} source messages are not on the destination")  # fmt: skip
        return lines


def account_report(
    plan: Plan, account: Account, source: Endpoint, destination: Endpoint
) -> AccountReport:
    """Compare every mapped folder of one account on both sides."""
    report = AccountReport(
        account=account.source_user, destination_account=account.destination_user
    )
    src, dst = open_pair(account, source, destination)
    with src, dst:
        folder_plan = plan_folders(plan, src, dst)
        existing = {f.path for f in dst.list_folders()}
        report.excluded = [folder_name(f.path) for f in folder_plan.excluded]
        for mapping in folder_plan.mappings:
            if not mapping.source.selectable:
                continue
            mine = labels.source_listing(src, folder_plan, mapping).messages
            exists = mapping.destination in existing
            theirs = dst.listing_since(mapping.destination, None) if exists else []
            ours, other = Counter(i.identity for i in mine), Counter(i.identity for i in theirs)
            report.folders.append(
                FolderComparison(
                    source=folder_name(mapping.source.path),
                    destination=folder_name(mapping.destination),
                    source_messages=len(mine),
                    source_bytes=sum(i.size for i in mine),
                    destination_messages=len(theirs),
                    destination_bytes=sum(i.size for i in theirs),
                    missing=sum((ours - other).values()),
                    extra=sum((other - ours).values()),
                    renamed=mapping.renamed,
                    exists=exists,
                )
            )
    return report
