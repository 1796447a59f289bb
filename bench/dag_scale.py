"""The scale run through Airflow: one DAG run of a plan with every account, on ``airflow
standalone`` (SQLite, LocalExecutor), started by the test harness's :class:`AirflowStack`.

Two plans over the same source accounts (each into its own destination accounts) run one after
the other on the same Airflow: ``parallel_accounts`` 4, then 1 (one account at a time: the same
tasks, the same Airflow overhead, no parallelism). Each run is triggered with ``stop:
initial_copy`` (each account: ``test`` then ``initial_copy``; the later steps skip). Its wall
time is the run's own (start to end as Airflow records them); Airflow's start-up is not counted.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.airflow_stack import AirflowStack

from bench.servers import BenchServers
from bench.tools import Login, connection_json, write_plan

DAG_ID = "migration_bench"  # + the plan's parallel_accounts


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _destination_total(servers: BenchServers, logins: list[Login]) -> int:
    total = 0
    for login in logins:
        client = servers.client(servers.destination, login)
        try:
            for _, _, name in client.list_folders():
                total += client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
        finally:
            client.logout()
    return total


def run_dag_variants(
    servers: BenchServers,
    workdir: Path,
    sources: list[Login],
    destinations: dict[int, list[Login]],
    messages: int,
    *,
    timeout: float = 900,
    say=print,
) -> dict[int, dict[str, Any]]:
    """Start Airflow once with one plan per entry of ``destinations`` (its key: the plan's
    ``parallel_accounts``), run each plan's DAG once in that order, stop Airflow; the figures per
    key (``ok`` False and an ``error`` when Airflow could not run it)."""
    root = workdir / "airflow"
    plans = root / "plans"
    plans.mkdir(parents=True, exist_ok=True)
    for parallel, logins in destinations.items():
        write_plan(plans, list(zip(sources, logins, strict=True)), name=f"bench{parallel}",
                   parallel_accounts=parallel, plan_name=f"bench{parallel}")  # fmt: skip
    stack = AirflowStack(root / "stack", plans_dir=plans, state_dir=root / "state")
    stack.env["AIRFLOW_CONN_BENCH_SRC"] = connection_json(sources[0])
    stack.env["AIRFLOW_CONN_BENCH_DST"] = connection_json(next(iter(destinations.values()))[0])
    stack.env["AIRFLOW__CORE__PARALLELISM"] = str(max(4, *destinations))
    figures = {
        parallel: {"name": f"one DAG run, LocalExecutor, {parallel} at a time", "ok": False}
        for parallel in destinations
    }
    started = time.monotonic()
    try:
        stack.start_standalone()
        api = stack.api()
        for parallel in destinations:
            dag_id = f"{DAG_ID}{parallel}"
            stack.wait_for_dag(dag_id)
            api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        startup = time.monotonic() - started
        say(f"  scale DAG: Airflow up in {startup:.0f} s")
        for parallel, logins in destinations.items():
            figures[parallel]["airflow_startup_seconds"] = startup
            figures[parallel].update(
                _one_run(stack, f"{DAG_ID}{parallel}", servers, logins, messages, timeout)
            )
            say(f"  scale DAG run, {parallel} at a time: "
                f"{figures[parallel].get('seconds') or float('nan'):.1f} s "
                f"({figures[parallel].get('run_state')}), {figures[parallel].get('copied')} messages")  # fmt: skip
    except Exception as exc:  # Airflow not usable here: report, keep the other figures
        error = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        for figure in figures.values():
            figure.setdefault("error", error)
        say(f"  scale DAG: failed: {error[:300]}")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    return figures


def _one_run(
    stack: AirflowStack,
    dag_id: str,
    servers: BenchServers,
    destinations: list[Login],
    messages: int,
    timeout: float,
) -> dict[str, Any]:
    """Trigger ``dag_id`` with ``stop: initial_copy``, wait for it; its figures."""
    api = stack.api()
    answer = api.request("POST", f"/dags/{dag_id}/dagRuns",
                         json={"logical_date": None, "conf": {"stop": "initial_copy"}})  # fmt: skip
    triggered = time.monotonic()
    run = stack.wait_for_run(dag_id, answer["dag_run_id"], timeout)
    figures: dict[str, Any] = {"observed_seconds": time.monotonic() - triggered}
    tasks = api.task_instances(dag_id, answer["dag_run_id"])
    states = [ti["state"] for ti in tasks.values()]
    copies = [ti for task, ti in tasks.items() if task.endswith(".initial_copy")]
    figures["seconds"] = _seconds(run.get("start_date"), run.get("end_date"))
    figures["run_state"] = run["state"]
    figures["task_states"] = {state: states.count(state) for state in set(states)}
    figures["initial_copy_task_seconds_sum"] = sum(ti.get("duration") or 0 for ti in copies)
    figures["copied"] = _destination_total(servers, destinations)
    figures["ok"] = run["state"] == "success" and figures["copied"] == messages * len(destinations)
    if not figures["ok"]:
        figures["error"] = f"run {run['state']}, {figures['copied']} messages copied"
    return figures
