"""The groupware section of an account's ``test``, ``initial_copy`` and ``delta_copy`` tasks.

When the plan's ``kinds`` name calendars, contacts or tasks, the same task that moves the mail
moves them right after it, inside the same engine call (so the same retries, pool slot, rhythm
and failure mapping apply; the DAG keeps five tasks per account). The task log gets a section of
its own, opened by a ``----- groupware -----`` line, and the XCom a small ``groupware`` entry:
counts per kind on both sides, what the pass did, the first per-item problems.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from mailmigrate.groupware.account import (
    copy_account_groupware,
    groupware_kinds,
    groupware_preflight,
    pass_summary,
    preflight_summary,
    summary_lines,
)
from mailmigrate_airflow.hooks import get_endpoint

if TYPE_CHECKING:
    from mailmigrate.connections import Endpoint
    from mailmigrate.plan import Account, Plan

HEADER = "----- groupware ({kinds}): {step} -----"


def _endpoints(plan: Plan) -> tuple[Endpoint, Endpoint]:
    assert plan.groupware is not None
    found = []
    for side, conn_id in (("groupware source", plan.groupware.source_connection),
                          ("groupware destination", plan.groupware.destination_connection)):  # fmt: skip
        try:
            found.append(get_endpoint(conn_id))
        except AirflowNotFoundException:
            raise AirflowFailException(
                f"{side} connection {conn_id!r} does not exist; add it in Admin -> Connections "
                "(conn type dav, or ews for Exchange)"
            ) from None
    return found[0], found[1]


def _log(log: Any, plan: Plan, step: str, summary: dict[str, Any]) -> None:
    log.info(HEADER.format(kinds=", ".join(groupware_kinds(plan)), step=step))
    for line in summary_lines(summary):
        log.info("groupware: %s", line)


def test_groupware(plan: Plan, account: Account, log: Any) -> dict[str, Any] | None:
    """The test step's groupware part: both sides' collections with item counts and the
    mapping; ``None`` when the plan moves mail only. Engine errors propagate (the caller runs
    this inside its engine call)."""
    if not groupware_kinds(plan):
        return None
    source, destination = _endpoints(plan)
    summary = preflight_summary(groupware_preflight(plan, account, source, destination))
    _log(log, plan, "test", summary)
    return summary


def copy_groupware(plan: Plan, account: Account, phase: str, log: Any) -> dict[str, Any] | None:
    """One groupware pass (``initial`` or ``delta``) after the mail; ``None`` when the plan
    moves mail only."""
    if not groupware_kinds(plan):
        return None
    source, destination = _endpoints(plan)
    result = copy_account_groupware(plan, account, source, destination, phase)
    summary = pass_summary(result)
    _log(log, plan, f"{phase} copy", summary)
    return summary
