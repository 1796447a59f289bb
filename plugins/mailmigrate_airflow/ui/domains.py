"""The MX side of the status page: one state per mail domain, the hosts each DNS server answers
now, and the cutover banner ("change the MX of <domain> to <hosts> now").

A domain's state is one fact about DNS, not one per account: every ``wait_for_mx`` of a domain
asks the same servers, so the domain has propagated as soon as one of them released. While any
of them waits, the page asks the servers itself (:func:`seen_now`, the same check as the sensor,
cached for :data:`SEEN_TTL` seconds), because a deferred sensor's latest answers live only in the
triggerer's memory.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from mailmigrate.mx import check_mx
from mailmigrate_airflow.triggers import mx_check

SEEN_TTL = 30.0
"""Seconds a live MX check is reused (per domain and server list): a page reload is not a poke."""
SEEN_QUERY_TIMEOUT = 2.0
WAITING = {"deferred", "running", "queued", "scheduled", "up_for_retry", "up_for_reschedule"}
FAILED = {"failed", "upstream_failed"}

_cache: dict[tuple, tuple[float, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def sensor_of(dag: Any, account: dict[str, Any]) -> Any | None:
    """The account's ``wait_for_mx`` check: the sensor (serialized) of its static group, or
    that of its mapped group with the account's domain (``account``: a row of
    :func:`~mailmigrate_airflow.ui.status.accounts_of`); None without an MX check."""
    task = dag.task_dict.get(f"{account['tasks']}.wait_for_mx")
    if task is None or not hasattr(task, "expect"):  # no mx section: NoMxCheckOperator
        return None
    if account.get("domain"):
        return SimpleNamespace(
            domain=account["domain"],
            expect=task.expect,
            resolvers=getattr(task, "resolvers", ()),
            authoritative=getattr(task, "authoritative", ()),
        )
    return task if isinstance(getattr(task, "domain", None), str) and task.domain else None


def account_mx(sensor: Any | None, state: str | None, result: dict[str, Any]) -> dict[str, Any]:
    """One account's MX column: its domain and its sensor's state in words."""
    if sensor is None:
        label = "not checked"
    elif state == "success":
        label = "propagated"
    elif state in WAITING:
        label = "waiting"
    elif state in FAILED:
        label = "failed"
    elif state == "skipped":
        label = "not checked in this run"
    else:
        label = "not yet checked"
    return {
        "domain": getattr(sensor, "domain", None) or result.get("domain"),
        "expect": sorted(getattr(sensor, "expect", None) or result.get("mx") or []),
        "state": label,
        "mx": result.get("mx") or [],
        "propagated_at": result.get("propagated_at"),
    }


# From the most to the least telling: one released sensor proves the domain has propagated.
_PRECEDENCE = ("propagated", "waiting", "failed", "not yet checked", "not checked in this run")


def domains_of(rows: list[dict[str, Any]], sensors: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per mail domain: accounts, one MX state, expected hosts, what servers answer.

    :param sensors: group id -> ``wait_for_mx`` sensor, for the live check of waiting domains.
    """
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["mx"]["domain"] and row["mx"]["state"] != "not checked":
            by_domain.setdefault(row["mx"]["domain"], []).append(row)
    domains = []
    for domain, members in sorted(by_domain.items()):
        states = {m["mx"]["state"] for m in members}
        state = next(s for s in _PRECEDENCE if s in states)
        released = [m["mx"] for m in members if m["mx"]["state"] == "propagated"]
        entry: dict[str, Any] = {
            "domain": domain,
            "accounts": len(members),
            "state": state,
            "expect": members[0]["mx"]["expect"],
            "mx": released[0]["mx"] if released else [],
            "propagated_at": min((m["propagated_at"] or "" for m in released), default=None)
            or None,
            "seen": None,
        }
        if state == "waiting":
            waiting = next(m for m in members if m["mx"]["state"] == "waiting")
            entry["seen"] = seen_now(sensors.get(waiting["group_id"]))
        domains.append(entry)
    return domains


def seen_now(sensor: Any | None) -> dict[str, Any] | None:
    """What every server of the sensor's check answers now (cached for :data:`SEEN_TTL` s):
    ``{"at": epoch seconds, "servers": [{"server", "role", "hosts", "error", "expected"}]}``."""
    if sensor is None:
        return None
    check = mx_check(sensor)
    key = (sensor.domain, check.expect, check.resolvers, check.authoritative)
    with _cache_lock:
        hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < SEEN_TTL:
        return hit[1]
    try:
        observation = check_mx(sensor.domain, check, timeout=SEEN_QUERY_TIMEOUT)
    except Exception as exc:  # no resolver configured, bad server address: say so, no page error
        seen: dict[str, Any] = {"at": time.time(), "servers": [], "error": str(exc)}
    else:
        seen = {
            "at": observation.observed_at,
            "error": None,
            "servers": [
                {
                    "server": answer.server,
                    "role": answer.role,
                    "hosts": sorted(answer.hosts),
                    "error": answer.line.partition(": ")[2] if answer.error else None,
                    "expected": answer.answers(observation.expected),
                }
                for answer in observation.answers
            ],
        }
    with _cache_lock:
        _cache[key] = (time.monotonic(), seen)
    return seen


def cutover_of(status: dict[str, Any]) -> dict[str, Any] | None:
    """The banner over the page: change the MX now, or the migration is done; else None.

    ``change_mx`` when ``cutover_ready`` succeeded and some domain has not propagated yet;
    ``done`` when every selected account's delta copy succeeded.
    """
    totals = status["totals"]
    if totals["selected"] and totals["done"] == totals["selected"]:
        ends = [r["steps"]["delta_copy"].get("end_date") for r in status["accounts"]]
        return {"kind": "done", "at": max((e for e in ends if e), default=None)}
    ready = next((t for t in status["extra_tasks"] if t["task_id"] == "cutover_ready"), None)
    if ready is None or ready["state"] != "success":
        return None
    pending = [d for d in status["domains"] if d["state"] != "propagated"]
    if not pending:
        return None
    return {"kind": "change_mx", "at": ready.get("end_date"), "domains": pending}
