"""The per-migration lines of the status page, from its account rows
(:func:`mailmigrate_airflow.ui.status.migration_status`): the MX state per domain, the totals and
the estimate of the time the initial copies still need."""

from __future__ import annotations

from typing import Any


def domains_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["mx"]["domain"]:
            by_domain.setdefault(row["mx"]["domain"], []).append(row)
    domains = []
    for domain, members in sorted(by_domain.items()):
        states = {m["mx"]["state"] for m in members}
        state = states.pop() if len(states) == 1 else "mixed: " + ", ".join(sorted(states))
        mx = next((m["mx"]["mx"] for m in members if m["mx"]["mx"]), [])
        domains.append({"domain": domain, "accounts": len(members), "state": state, "mx": mx})
    return domains


def totals_of(rows: list[dict[str, Any]], parallel: int) -> dict[str, Any]:
    selected = [r for r in rows if r["phase"]["key"] != "not_selected"]
    phases: dict[str, int] = {}
    for row in selected:
        phases[row["phase"]["label"]] = phases.get(row["phase"]["label"], 0) + 1
    totals = {
        "accounts": len(rows),
        "selected": len(selected),
        "done": sum(1 for r in selected if r["phase"]["key"] == "done"),
        "failed": sum(1 for r in selected if r["phase"]["key"] == "failed"),
        "phases": phases,
        "source_messages": _total(selected, "source", "messages"),
        "source_bytes": _total(selected, "source", "bytes"),
        "destination_messages": _total(selected, "destination", "messages"),
        "destination_bytes": _total(selected, "destination", "bytes"),
        "copied_messages": sum(r["copied"]["messages"] for r in selected),
        "copied_bytes": sum(r["copied"]["bytes"] for r in selected),
        "failed_messages": sum(r["failed_messages"] for r in selected),
    }
    totals["estimate"] = estimate(selected, parallel)
    return totals


def _total(rows: list[dict[str, Any]], side: str, key: str) -> int | None:
    values = [r[side][key] for r in rows if r[side][key] is not None]
    return sum(values) if values else None


def estimate(rows: list[dict[str, Any]], parallel: int) -> dict[str, Any] | None:
    """Time left for the initial copies still to do, at the per-account rate of those done,
    ``parallel`` at a time; accounts of unknown size count as the average known size."""
    done = [r for r in rows if r["initial"]["state"] == "success" and r["initial"]["seconds"] > 0]
    todo = [r for r in rows if r["initial"]["state"] not in ("success", "skipped")
            and r["phase"]["key"] != "failed"]  # fmt: skip
    if not todo:
        return {
            "seconds": 0,
            "remaining_accounts": 0,
            "basis": "every selected initial copy is done",
        }
    if not done:
        return None
    rate = sum(r["initial"]["bytes"] for r in done) / sum(r["initial"]["seconds"] for r in done)
    sizes = [r["planned_bytes"] or r["source"]["bytes"] for r in rows]
    known = [s for s in sizes if s]
    average = sum(known) / len(known) if known else 0
    remaining = sum((r["planned_bytes"] or r["source"]["bytes"] or average) for r in todo)
    lanes = max(1, min(parallel, len(todo)))
    if rate <= 0:
        return None
    return {
        "seconds": round(remaining / (rate * lanes), 1),
        "remaining_accounts": len(todo),
        "remaining_bytes": int(remaining),
        "rate_bytes_per_second": round(rate, 1),
        "parallel": lanes,
        "basis": f"{len(done)} finished initial copies, {lanes} accounts at a time",
    }
