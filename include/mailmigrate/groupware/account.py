"""One plan account's groupware: the DAV endpoints from the plan's ``groupware`` connections and
the accounts CSV, the test step's lines and a pass's small summary. The DAG layer calls
:func:`groupware_preflight` and :func:`copy_account_groupware` after the mail; nothing here
imports Airflow.

Credentials: each side logs in as the account's user with the account's password from the
accounts CSV (``source_user``/``source_password``, ``destination_user``/
``destination_password``), the same user names as for mail. The connection gives the server:
host, port, ``path``, ``security``, ``ca_file`` (:meth:`DavEndpoint.from_connection`). An ``ews``
connection serves Exchange (:mod:`mailmigrate.groupware.ews`) with the mail's options, so with
``impersonation`` the connection's admin login reaches every account and the CSV needs no
password.

Counts per kind (:func:`kind_counts`): a calendar collection holding only tasks (``VTODO``)
counts as a task list and its items as tasks; any other calendar counts as a calendar and its
items as events (a mixed calendar's tasks among them); address books and their contacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailmigrate.errors import ConnectionConfigError
from mailmigrate.groupware.dav import CALENDAR, Collection, DavEndpoint
from mailmigrate.groupware.ews import EwsGroupwareEndpoint
from mailmigrate.groupware.side import GroupwareEndpoint
from mailmigrate.groupware.sync import (
    KINDS,
    GroupwareResult,
    Preflight,
    copy_groupware,
    preflight,
)
from mailmigrate.state import default_state_dir

if TYPE_CHECKING:
    from mailmigrate.connections import Endpoint
    from mailmigrate.plan import Account, Plan

COUNTED = ("calendars", "events", "task_lists", "tasks", "address_books", "contacts")
MAX_PROBLEMS = 20  # per-item problems kept in a summary (the log has all of them)


def groupware_kinds(plan: Plan) -> tuple[str, ...]:
    """The groupware kinds the plan moves (empty: mail only)."""
    return tuple(kind for kind in plan.kinds if kind in KINDS)


SIDES = {"dav": DavEndpoint, "ews": EwsGroupwareEndpoint}


def endpoints(account: Account, source: Endpoint, destination: Endpoint
              ) -> tuple[GroupwareEndpoint, GroupwareEndpoint]:  # fmt: skip
    """Both sides' endpoints of ``account`` from the ``groupware`` connections: conn type
    ``dav`` (CalDAV/CardDAV) or ``ews`` (Exchange, with the mail's options: impersonation with
    the connection's admin login, or the account's own password); another type is a
    :class:`ConnectionConfigError` naming it."""
    for connection in (source, destination):
        if connection.kind not in SIDES:
            raise ConnectionConfigError(f"connection {connection.conn_id!r}: the plan's "
                                        f"groupware needs conn type dav or ews, not "
                                        f"{connection.kind}")  # fmt: skip
    return (
        SIDES[source.kind].from_connection(source, account.source_user, account.source_password),
        SIDES[destination.kind].from_connection(destination, account.destination_user,
                                                account.destination_password),
    )  # fmt: skip


def groupware_preflight(plan: Plan, account: Account, source: Endpoint, destination: Endpoint
                        ) -> Preflight:  # fmt: skip
    """Collections with item counts on both sides and the mapping a copy would use."""
    return preflight(*endpoints(account, source, destination), groupware_kinds(plan))


def copy_account_groupware(plan: Plan, account: Account, source: Endpoint,
                           destination: Endpoint, phase: str,
                           state_dir: Path | None = None) -> GroupwareResult:  # fmt: skip
    """One pass over the account's groupware, with the plan's ``propagate_deletions`` and the
    state next to the mail's (``state_dir``, else the plan's, else the default)."""
    assert plan.groupware is not None, "groupware kinds need a groupware section (plan check)"
    directory = Path(state_dir or plan.state_dir or default_state_dir())
    return copy_groupware(*endpoints(account, source, destination), plan=plan.name,
                          state_dir=directory, phase=phase, kinds=groupware_kinds(plan),
                          propagate_deletions=plan.groupware.propagate_deletions)  # fmt: skip


def _kind(kind: str, components: tuple[str, ...]) -> tuple[str, str]:
    if kind != CALENDAR:
        return "address_books", "contacts"
    if tuple(components) == ("VTODO",):
        return "task_lists", "tasks"
    return "calendars", "events"


def kind_counts(collections: list[tuple[Collection, int]]) -> dict[str, int]:
    """Collections and items per kind (see the module docstring) of one side."""
    counts = dict.fromkeys(COUNTED, 0)
    for collection, items in collections:
        holder, item = _kind(collection.kind, collection.components)
        counts[holder] += 1
        counts[item] += items
    return counts


def preflight_summary(result: Preflight) -> dict[str, Any]:
    """The test step's groupware XCom: counts per kind on both sides and the mapping."""
    return {
        "source": kind_counts(result.source),
        "destination": kind_counts(result.destination),
        "mapping": [mapped.describe() for mapped in result.mapping],
    }


def pass_summary(result: GroupwareResult) -> dict[str, Any]:
    """A copy pass's groupware XCom: per side counts per kind, what the pass did, and the
    first :data:`MAX_PROBLEMS` per-item problems in the owner's words."""
    sides: dict[str, dict[str, int]] = {
        "source": dict.fromkeys(COUNTED, 0),
        "destination": dict.fromkeys(COUNTED, 0),
    }
    for outcome in result.collections:
        holder, item = _kind(outcome.kind, outcome.components)
        for side, items in (("source", outcome.source_items),
                            ("destination", outcome.destination_items)):  # fmt: skip
            sides[side][holder] += 1
            sides[side][item] += items
    problems = result.all_problems
    return {
        "phase": result.phase,
        **sides,
        "done": {counter: result.total(counter) for counter in
                 ("added", "updated", "unchanged", "deleted", "kept_deleted", "kept_changed")},
        "renamed": [[c.source, c.destination] for c in result.collections if c.renamed],
        "problem_count": len(problems),
        "problems": [str(problem) for problem in problems[:MAX_PROBLEMS]],
    }  # fmt: skip


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A summary (:func:`pass_summary` or :func:`preflight_summary`) as log lines."""

    def counts(side: dict[str, int]) -> str:
        return (f"{side['calendars']} calendars ({side['events']} events), "
                f"{side['task_lists']} task lists ({side['tasks']} tasks), "
                f"{side['address_books']} address books ({side['contacts']} contacts)")  # fmt: skip

    lines = [f"source: {counts(summary['source'])}",
             f"destination: {counts(summary['destination'])}"]  # fmt: skip
    lines += summary.get("mapping", [])
    if "done" in summary:
        lines.append(", ".join(f"{n} {what.replace('_', ' ')}"
                               for what, n in summary["done"].items()))  # fmt: skip
        lines += [f"renamed: {a!r} -> {b!r}" for a, b in summary["renamed"]]
        lines += [f"problem: {text}" for text in summary["problems"]]
        more = summary["problem_count"] - len(summary["problems"])
        if more > 0:
            lines.append(f"... and {more} more problems (see the lines above)")
    return lines
